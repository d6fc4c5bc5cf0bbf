"""Orders placed through the API: every out-of-range input is a 422 naming its field, never a 500,
and nothing lands. The real aiohttp app on a real store with the demo data, both backends."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from crm_bridge.demo import load_demo_data
from crm_bridge.models import Invoice, Order
from ivr.settings import default_settings, load_settings
from ivr.web.api import build_web_app
from ivr.web.common import MAX_DB_INT
from ivr.web.order_input import OrderLimits

TOKEN = "bounds-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = OrderLimits(max_quantity=50, max_lines=3, max_total_quantity=60)
URL = "/api/v1/customers/C001/orders"


@pytest.fixture
async def client(store):
    await load_demo_data(store.sessions)
    client = TestClient(TestServer(build_web_app(store, api_token=TOKEN, order_limits=LIMITS)))
    await client.start_server()
    yield client
    await client.close()


async def stored(store) -> tuple[int, int]:
    async with store.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(Order).where(Order.source == "operator"))
        invoices = await session.scalar(select(func.count()).select_from(Invoice))
    return int(orders or 0), int(invoices or 0)


def line(quantity: object, sku: object = "WATER-19") -> dict[str, object]:
    return {"sku": sku, "quantity": quantity}


@pytest.mark.parametrize(
    ("body", "error_id", "fields"),
    [
        ({"lines": [line(0)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(-3)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(51)]}, "invalid_order", ["lines[0].quantity"]),  # flow.max_quantity
        ({"lines": [line(10_000_000)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(10**40)]}, "invalid_order", ["lines[0].quantity"]),  # past every integer column
        ({"lines": [line(2.5)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(2.0)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line("2")]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(True)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(None)]}, "invalid_order", ["lines[0].quantity"]),
        ({"lines": [line(1), line(0), line(99)]}, "invalid_order", ["lines[1].quantity", "lines[2].quantity"]),
        ({"lines": [line(40), line(30, "CUPS-100")]}, "invalid_order", ["lines"]),  # 70 > 60 units
        ({"lines": [line(1)] * 4}, "invalid_order", ["lines"]),  # 4 > 3 lines
        ({"lines": []}, "invalid_order", ["lines"]),
        ({"lines": "WATER-19"}, "invalid_order", ["lines"]),
        ([line(1)], "invalid_order", [""]),
        ({"lines": [7]}, "invalid_order", ["lines[0]"]),
        ({"lines": [line(1, "")]}, "invalid_order", ["lines[0].sku"]),
        ({"lines": [line(1, 19)]}, "invalid_order", ["lines[0].sku"]),
        ({"lines": [line(1, "W" * 65)]}, "invalid_order", ["lines[0].sku"]),
        ({"lines": [line(1)], "call_id": "1" * 65}, "invalid_order", ["call_id"]),
        ({"lines": [line(1)], "call_id": 17}, "invalid_order", ["call_id"]),
        ({"lines": [line(1), line(2, "NOPE")]}, "unknown_product", ["lines[1].sku"]),
    ],
)
async def test_out_of_range_orders_are_422_with_the_field(client, store, body, error_id, fields) -> None:
    response = await client.post(URL, json=body, headers={**AUTH, "Idempotency-Key": "bounds"})
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["id"] == error_id and error["message"]
    assert [f["field"] for f in error["fields"]] == fields
    assert all(f["message"] for f in error["fields"])
    assert await stored(store) == (0, 0)
    # The same key with a good body afterwards places exactly one order: the refusal kept nothing.
    good = await client.post(URL, json={"lines": [line(2)]}, headers={**AUTH, "Idempotency-Key": "bounds"})
    assert good.status == 201
    assert await stored(store) == (1, 1)


@pytest.mark.parametrize(
    ("raw", "status", "error_id"),
    [
        ('{"lines": [{"sku": "WATER-19", "quantity": 1e400}]}', 422, "invalid_order"),  # inf
        ('{"lines": [{"sku": "WATER-19", "quantity": NaN}]}', 422, "invalid_order"),
        ('{"lines": [{"sku": "WATER-19", "quantity": ' + "9" * 5000 + "}]}", 422, "invalid_order"),
        ("[" * 100_000, 400, "bad_json"),
        ('{"lines": [', 400, "bad_json"),
    ],
)
async def test_numbers_json_cannot_hold_are_refused_not_500(client, store, raw, status, error_id) -> None:
    response = await client.post(URL, data=raw.encode(), headers={
        **AUTH, "Idempotency-Key": "raw", "Content-Type": "application/json"})
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["id"] == error_id
    assert await stored(store) == (0, 0)


async def test_bytes_that_are_not_utf8_are_bad_json(client, store) -> None:
    response = await client.post(URL, data=b'{"lines": "\xff"}', headers={
        **AUTH, "Idempotency-Key": "bytes", "Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"]["id"] == "bad_json"


async def test_an_order_at_every_bound_is_placed(client, store) -> None:
    body = {"lines": [line(50), line(9, "CUPS-100"), line(1, "WATER-19")], "call_id": "c" * 64}
    response = await client.post(URL, json=body, headers={**AUTH, "Idempotency-Key": "edge"})
    assert response.status == 201, await response.text()
    assert await stored(store) == (1, 1)


@pytest.mark.parametrize(
    ("method", "path", "status", "error_id"),
    [
        ("GET", f"/api/v1/calls?offset={MAX_DB_INT + 1}", 400, "bad_query"),
        ("GET", "/api/v1/calls?offset=" + "9" * 40, 400, "bad_query"),
        ("GET", "/api/v1/calls?limit=" + "9" * 40, 400, "bad_query"),
        ("POST", "/api/v1/tasks/" + "9" * 40, 404, "task_not_found"),
        ("POST", f"/api/v1/tasks/{MAX_DB_INT + 1}", 404, "task_not_found"),
        ("POST", "/api/v1/tasks/0", 404, "task_not_found"),
    ],
)
async def test_huge_ids_and_offsets_are_not_500(client, method, path, status, error_id) -> None:
    response = await client.request(method, path, json={"status": "done"}, headers=AUTH)
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["id"] == error_id


async def test_the_bounds_come_from_the_configuration(store, tmp_path) -> None:
    assert OrderLimits.from_settings(default_settings()) == OrderLimits(
        max_quantity=50, max_lines=50, max_total_quantity=500)
    config = tmp_path / "ivr.toml"
    config.write_text("[flow]\nmax_quantity = 9\n[orders]\nmax_lines = 2\nmax_total_quantity = 12\n")
    limits = OrderLimits.from_settings(load_settings(config, environ={}))
    assert limits == OrderLimits(max_quantity=9, max_lines=2, max_total_quantity=12)
    await load_demo_data(store.sessions)
    client = TestClient(TestServer(build_web_app(store, api_token=TOKEN, order_limits=limits)))
    await client.start_server()
    try:
        headers = {**AUTH, "Idempotency-Key": "cfg"}
        too_many = await client.post(URL, json={"lines": [line(10)]}, headers=headers)
        error = (await too_many.json())["error"]
        assert too_many.status == 422 and "1..9" in error["fields"][0]["message"]
        total = await client.post(URL, json={"lines": [line(9), line(4, "CUPS-100")]}, headers=headers)
        assert total.status == 422 and "at most 12 units" in json.dumps((await total.json())["error"]["fields"])
        ok = await client.post(URL, json={"lines": [line(9), line(3, "CUPS-100")]}, headers=headers)
        assert ok.status == 201
    finally:
        await client.close()
    with pytest.raises(ValueError, match="positive"):
        OrderLimits(max_quantity=0, max_lines=1, max_total_quantity=1)
