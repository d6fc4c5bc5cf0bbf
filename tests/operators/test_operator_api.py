"""Orders placed by operators (idempotent) and the callback task list, through the HTTP API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from crm_bridge.demo import load_demo_data
from crm_bridge.models import Invoice
from ivr.web.api import build_web_app

TOKEN = "op-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(store):
    await load_demo_data(store.sessions)
    client = TestClient(TestServer(build_web_app(store, api_token=TOKEN)))
    await client.start_server()
    yield client
    await client.close()


async def invoices(store) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Invoice))


async def test_operator_order_is_created_once_per_idempotency_key(client, store):
    body = {"lines": [{"sku": "WATER-19", "quantity": 3}, {"sku": "CUPS-100", "quantity": 1}], "call_id": "1.1"}
    headers = {**AUTH, "Idempotency-Key": "op-101-20261127-0001"}
    first = await client.post("/api/v1/customers/C001/orders", json=body, headers=headers)
    assert first.status == 201
    created = await first.json()
    assert created["created"] is True
    assert created["order"]["source"] == "operator"
    assert created["invoice"]["total"] == "1170.00"  # 3 × 350 + 120
    # the browser retries (double click, flaky network): same order, no second invoice
    again = await client.post("/api/v1/customers/C001/orders", json=body, headers=headers)
    assert again.status == 200
    assert (await again.json())["order"]["order_id"] == created["order"]["order_id"]
    assert await invoices(store) == 1


async def test_concurrent_retries_still_make_one_order(client, store):
    headers = {**AUTH, "Idempotency-Key": "race-1"}
    body = {"lines": [{"sku": "WATER-19", "quantity": 1}]}
    replies = await asyncio.gather(*(client.post("/api/v1/customers/C002/orders", json=body, headers=headers)
                                     for _ in range(5)))
    assert sorted(r.status for r in replies) == [200, 200, 200, 200, 201]
    assert await invoices(store) == 1


@pytest.mark.parametrize(
    ("customer", "body", "headers", "status", "error_id"),
    [
        ("C001", {"lines": [{"sku": "WATER-19", "quantity": 1}]}, {}, 400, "idempotency_key_required"),
        ("C001", {"lines": []}, {"Idempotency-Key": "k1"}, 422, "invalid_order"),
        ("C001", {"lines": [{"sku": "WATER-19", "quantity": 0}]}, {"Idempotency-Key": "k2"}, 422, "invalid_order"),
        ("C001", {"lines": [{"sku": "WATER-19", "quantity": "2"}]}, {"Idempotency-Key": "k3"}, 422,
         "invalid_order"),
        ("C001", {"lines": [{"sku": "NOPE", "quantity": 1}]}, {"Idempotency-Key": "k4"}, 422, "unknown_product"),
        ("C999", {"lines": [{"sku": "WATER-19", "quantity": 1}]}, {"Idempotency-Key": "k5"}, 404,
         "customer_not_found"),
    ],
)
async def test_bad_operator_orders_are_refused_with_stable_ids(client, store, customer, body, headers, status,
                                                               error_id):
    response = await client.post(f"/api/v1/customers/{customer}/orders", json=body, headers={**AUTH, **headers})
    assert response.status == status
    assert (await response.json())["error"]["id"] == error_id
    assert await invoices(store) == 0


async def test_same_key_for_another_customer_is_a_conflict(client):
    headers = {**AUTH, "Idempotency-Key": "shared-key"}
    body = {"lines": [{"sku": "WATER-19", "quantity": 1}]}
    first = await client.post("/api/v1/customers/C001/orders", json=body, headers=headers)
    assert first.status == 201
    response = await client.post("/api/v1/customers/C002/orders", json=body, headers=headers)
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["id"] == "idempotency_conflict" and error["differs"] == "customer"
    assert error["order_id"] == (await first.json())["order"]["order_id"]


async def test_same_key_with_another_body_is_a_conflict_naming_the_order_that_stands(client, store):
    """Issue 9: never 200 with the old order for a changed body; the first order stays as it was."""
    headers = {**AUTH, "Idempotency-Key": "op-102-0001"}
    body = {"lines": [{"sku": "WATER-19", "quantity": 3}]}
    first = await client.post("/api/v1/customers/C001/orders", json=body, headers=headers)
    assert first.status == 201
    order_id = (await first.json())["order"]["order_id"]
    changed = {"lines": [{"sku": "WATER-19", "quantity": 9}]}
    response = await client.post("/api/v1/customers/C001/orders", json=changed, headers=headers)
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["id"] == "idempotency_conflict"
    assert (error["idempotency_key"], error["order_id"], error["differs"]) == ("op-102-0001", order_id, "lines")
    assert order_id in error["message"] and "op-102-0001" in error["message"]
    assert "operator:" not in error["message"]  # the key as the client sent it, not the store's
    # The same body again is still the plain replay, and only one invoice exists.
    again = await client.post("/api/v1/customers/C001/orders", json=body, headers=headers)
    assert again.status == 200
    replay = await again.json()
    assert replay["order"]["order_id"] == order_id and replay["created"] is False
    assert [(line["sku"], line["quantity"]) for line in replay["order"]["lines"]] == [("WATER-19", 3)]
    assert await invoices(store) == 1


async def test_orders_need_the_token(client):
    response = await client.post("/api/v1/customers/C001/orders", json={"lines": []})
    assert response.status == 401


async def test_callback_tasks_are_listed_and_closed(client, store):
    now = datetime.now(UTC)
    task, _ = await store.open_callback_task(customer_id="C001", number="+79161234567",
                                            reason="abandoned_in_queue", due_at=now, call_id="9.9")
    listed = await (await client.get("/api/v1/tasks", headers=AUTH)).json()
    assert [t["task_id"] for t in listed["tasks"]] == [task.task_id]
    assert listed["tasks"][0]["reason"] == "abandoned_in_queue"

    done = await client.post(f"/api/v1/tasks/{task.task_id}", json={"status": "done", "note": "заказал 4"},
                             headers=AUTH)
    assert done.status == 200 and (await done.json())["status"] == "done"
    assert (await (await client.get("/api/v1/tasks", headers=AUTH)).json())["tasks"] == []
    history = await (await client.get("/api/v1/tasks?status=all", headers=AUTH)).json()
    assert history["tasks"][0]["note"] == "заказал 4"


@pytest.mark.parametrize(
    ("path", "body", "status", "error_id"),
    [
        ("/api/v1/tasks/999999", {"status": "done"}, 404, "task_not_found"),
        ("/api/v1/tasks/1", {"status": "maybe"}, 422, "invalid_status"),
        ("/api/v1/tasks/abc", {"status": "done"}, 400, "bad_request"),
    ],
)
async def test_bad_task_updates(client, path, body, status, error_id):
    response = await client.post(path, json=body, headers=AUTH)
    assert response.status == status
    assert (await response.json())["error"]["id"] == error_id


async def test_bad_task_filter(client):
    response = await client.get("/api/v1/tasks?status=weird", headers=AUTH)
    assert response.status == 400


async def test_the_same_order_again_within_hours_asks_repeat_order_first(client, store):
    """orders.duplicate_window_hours (4): another key, the same customer and lines -> 409
    possible_duplicate naming the earlier order; confirm_duplicate places it; a retry of the
    confirmed request under its key is a replay, not a question."""
    body = {"lines": [{"sku": "WATER-19", "quantity": 2}, {"sku": "CUPS-100", "quantity": 1}]}
    first = await client.post("/api/v1/customers/C001/orders", json=body, headers={**AUTH, "Idempotency-Key": "d-1"})
    assert first.status == 201
    order_id = (await first.json())["order"]["order_id"]
    swapped = {"lines": list(reversed(body["lines"]))}  # the order of the lines does not matter
    again = await client.post("/api/v1/customers/C001/orders", json=swapped, headers={**AUTH, "Idempotency-Key": "d-2"})
    assert again.status == 409
    error = (await again.json())["error"]
    assert error["id"] == "possible_duplicate" and error["order_id"] == order_id
    assert error["message"].startswith("Повторный заказ?")
    assert await invoices(store) == 1
    other = await client.post("/api/v1/customers/C001/orders", json={"lines": [{"sku": "WATER-19", "quantity": 1}]},
                              headers={**AUTH, "Idempotency-Key": "d-3"})
    assert other.status == 201  # other lines: no question
    confirmed = {**swapped, "confirm_duplicate": True}
    placed = await client.post("/api/v1/customers/C001/orders", json=confirmed,
                               headers={**AUTH, "Idempotency-Key": "d-2"})
    assert placed.status == 201 and (await placed.json())["order"]["order_id"] != order_id
    retry = await client.post("/api/v1/customers/C001/orders", json=swapped, headers={**AUTH, "Idempotency-Key": "d-2"})
    assert retry.status == 200  # the key's replay
    bad = await client.post("/api/v1/customers/C001/orders", json={**body, "confirm_duplicate": "yes"},
                            headers={**AUTH, "Idempotency-Key": "d-4"})
    assert bad.status == 422
    assert await invoices(store) == 3
