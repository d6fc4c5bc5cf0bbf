"""The read API over real HTTP (aiohttp TestServer) on a real store with the demo data, both backends.

Calls are placed through the real FastAGI server and repeat-order handler (tests/calls/harness.py),
so the call list and the timelines are what a real call leaves behind.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from ivr.web.api import MAX_PAGE, build_web_app
from tests.calls.harness import start_harness, wait_for

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web-prompts")  # each phrase is synthesized once per run


@pytest.fixture
async def demo_store(store):
    report = await load_demo_data(store.sessions)
    assert report.ok
    return store


async def _client(store) -> TestClient:
    client = TestClient(TestServer(build_web_app(store, api_token=TOKEN)))
    await client.start_server()
    return client


@pytest.fixture
async def client(demo_store):
    client = await _client(demo_store)
    yield client
    await client.close()


@pytest.fixture
async def harness(demo_store, prompts_dir):
    harness = await start_harness(demo_store, prompts_dir)
    yield harness
    await harness.stop()


async def place_call(harness, caller_id: str, keys: list[str]) -> tuple[str, dict[str, str]]:
    """One real call; returns its call id (the linkedid) once its row has an outcome."""
    fake = await harness.call(caller_id, keys)
    call_id = fake.channel_vars["CHANNEL(linkedid)"]

    async def ended():
        call = await harness.store.get_call(call_id)
        return call is not None and call.outcome is not None

    await wait_for(ended)
    return call_id, dict(fake.variables)


async def get_json(client: TestClient, path: str, headers: dict[str, str] | None = AUTH, status: int = 200):
    response = await client.get(path, headers=headers)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


def assert_error(body, error_id: str) -> None:
    assert body["error"]["id"] == error_id
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer пароль"},  # non-ASCII must be a 401, not a crash
    ],
    ids=["none", "wrong", "longer", "basic", "no-scheme", "scheme-only", "empty", "non-ascii"],
)
async def test_requests_without_the_token_get_401(client, headers):
    for path in ("/api/v1/customers/C001", "/api/v1/calls", "/api/v1/calls/x/timeline", "/api/v1/nowhere"):
        body = await get_json(client, path, headers=headers, status=401)
        assert_error(body, "unauthorized")
        assert "customer" not in body and "calls" not in body
    # the same request with the right token goes through
    await get_json(client, "/api/v1/customers/C001")


async def test_bearer_scheme_is_case_insensitive(client):
    body = await get_json(client, "/api/v1/calls", headers={"Authorization": f"bearer {TOKEN}"})
    assert body["calls"] == []


async def test_a_non_ascii_configured_token_works(demo_store):
    client = TestClient(TestServer(build_web_app(demo_store, api_token="ключ-1")))
    await client.start_server()
    try:
        await get_json(client, "/api/v1/calls", headers={"Authorization": "Bearer ключ-1"})
        body = await get_json(client, "/api/v1/calls", headers={"Authorization": "Bearer ключ-2"}, status=401)
        assert_error(body, "unauthorized")
    finally:
        await client.close()


# --- customer card -------------------------------------------------------------------------------


async def test_customer_card_of_imported_customer(client):
    body = await get_json(client, "/api/v1/customers/C002")
    customer = body["customer"]
    assert customer == {
        "customer_id": "C002",
        "last_name": "Петрова",
        "first_name": "Мария",
        "patronymic": "Ивановна",
        "language": "ru",
        "address": "Москва, Ленинский пр-т, д. 40, офис 3",
        "phones": ["+79031112233"],
        "company": "ООО «Ромашка»",  # a company customer: the invoice's buyer
        "inn": "7705123456",
        "kpp": "770501001",
    }
    assert [o["order_id"] for o in body["orders"]] == ["H-1020", "H-0998"]  # newest first
    newest = body["orders"][0]
    # 2026-10-28T11:30 Moscow time in the import file
    assert datetime.fromisoformat(newest["ordered_at"]) == datetime.fromisoformat("2026-10-28T11:30:00+03:00")
    assert datetime.fromisoformat(newest["ordered_at"]).utcoffset() is not None
    assert newest["total"] == "820.00"
    assert [(line["sku"], line["quantity"], line["unit_price"], line["amount"]) for line in newest["lines"]] == [
        ("WATER-19", 2, "350.00", "700.00"),
        ("CUPS-100", 1, "120.00", "120.00"),
    ]
    assert newest["lines"][0]["unit"] == "бутылка"
    assert newest["lines"][0]["name"] == "воды «Жемчужная роса» 19 л"
    assert newest["source"] == "import" and newest["invoice"] is None


async def test_customer_with_two_phones_has_both_in_e164(client):
    body = await get_json(client, "/api/v1/customers/C007")
    assert sorted(body["customer"]["phones"]) == ["+74957654321", "+79637654321"]


async def test_customer_card_shows_the_order_placed_by_phone_with_its_invoice(client, harness):
    call_id, variables = await place_call(harness, "+79161234567", ["1"])
    assert variables["IVR_RESULT"] == "done"
    order_id = variables["IVR_ORDER_ID"]

    body = await get_json(client, "/api/v1/customers/C001")
    assert body["customer"]["phones"] == ["+79161234567"]
    assert body["customer"]["first_name"] == "Алексей" and body["customer"]["patronymic"] == "Сергеевич"
    orders = body["orders"]
    assert [o["order_id"] for o in orders] == [order_id, "H-1013", "H-0991"]
    stamps = [datetime.fromisoformat(o["ordered_at"]) for o in orders]
    assert stamps == sorted(stamps, reverse=True)

    placed = orders[0]
    assert placed["source"] == "ivr" and placed["customer_id"] == "C001"
    assert placed["lines"] == [
        {
            "sku": "WATER-19",
            "quantity": 4,
            "unit_price": "350.00",
            "amount": "1400.00",
            "unit": "бутылка",
            "name": "воды «Жемчужная роса» 19 л",
            "unit_en": "bottle",
            "name_en": 'of "Zhemchuzhnaya Rosa" water, 19 litres',
        }
    ]
    assert placed["total"] == "1400.00"
    assert date.fromisoformat(placed["delivery_date"]) > datetime.fromisoformat(placed["ordered_at"]).date()
    invoice = placed["invoice"]
    assert invoice["number"].startswith("СЧ-")
    assert datetime.fromisoformat(invoice["issued_at"]).utcoffset() is not None
    for key in ("subtotal", "vat_rate", "vat_amount", "total"):
        assert isinstance(invoice[key], str), key  # Decimal travels as a string, never a float
    assert invoice["total"] == "1400.00"
    assert Decimal(invoice["vat_rate"]) == 22  # delivered in 2026
    assert Decimal(invoice["subtotal"]) + Decimal(invoice["vat_amount"]) == Decimal("1400.00")
    assert Decimal(invoice["vat_amount"]) == Decimal("252.46")  # 22 % included in 1400.00


async def test_unknown_customer_is_404(client):
    body = await get_json(client, "/api/v1/customers/C999", status=404)
    assert_error(body, "customer_not_found")


# --- calls -----------------------------------------------------------------------------------------


async def test_calls_are_listed_newest_first_with_outcome_and_reason(client, harness):
    assert (await get_json(client, "/api/v1/calls"))["calls"] == []
    placed = [
        await place_call(harness, "+79161234567", ["1"]),  # order placed
        await place_call(harness, "+79990000000", []),  # unknown number
        await place_call(harness, "+79031112233", ["0"]),  # asks for the operator
    ]
    body = await get_json(client, "/api/v1/calls")
    assert (body["limit"], body["offset"]) == (50, 0)
    calls = body["calls"]
    assert [c["call_id"] for c in calls] == [call_id for call_id, _ in reversed(placed)]
    assert [(c["outcome"], c["reason"]) for c in calls] == [
        ("operator", "caller_request"),
        ("operator", "unknown_number"),
        ("order_placed", "order_placed"),
    ]
    assert [c["customer_id"] for c in calls] == ["C002", None, "C001"]
    assert calls[2]["order_id"] == placed[0][1]["IVR_ORDER_ID"]
    assert calls[0]["order_id"] is None
    assert calls[1]["caller_number"] == "+79990000000"
    assert calls[0]["normalized_number"] == "+79031112233"
    for call in calls:
        started = datetime.fromisoformat(call["started_at"])
        ended = datetime.fromisoformat(call["ended_at"])
        assert started.utcoffset() is not None and started <= ended

    page = await get_json(client, "/api/v1/calls?limit=2")
    assert [c["call_id"] for c in page["calls"]] == [c["call_id"] for c in calls[:2]]
    assert page["limit"] == 2
    page = await get_json(client, "/api/v1/calls?limit=2&offset=2")
    assert [c["call_id"] for c in page["calls"]] == [calls[2]["call_id"]]
    assert page["offset"] == 2
    assert (await get_json(client, "/api/v1/calls?offset=3"))["calls"] == []
    assert len((await get_json(client, f"/api/v1/calls?limit={MAX_PAGE}"))["calls"]) == 3


async def test_calls_recorded_directly_by_the_store_are_listed(client, demo_store):
    t0 = datetime.fromisoformat("2026-11-02T10:00:00+03:00")
    for n, (call_id, outcome, reason) in enumerate(
        [("c-old", "operator", "no_input"), ("c-new", "order_placed", "order_placed"), ("c-open", None, None)]
    ):
        started = t0.replace(minute=n)
        await demo_store.record_call_start(
            call_id=call_id, caller_number="89161234567", normalized_number="+79161234567", customer_id="C001",
            channel="PJSIP/x", script="repeat-order", started_at=started,
        )
        if outcome:
            await demo_store.record_call_end(
                call_id, facts=facts_implying(outcome), reason=reason, ended_at=started.replace(second=30)
            )
    calls = (await get_json(client, "/api/v1/calls"))["calls"]
    assert [(c["call_id"], c["outcome"], c["reason"]) for c in calls] == [
        ("c-open", None, None),
        ("c-new", "order_placed", "order_placed"),
        ("c-old", "operator", "no_input"),
    ]
    assert calls[0]["ended_at"] is None
    assert datetime.fromisoformat(calls[2]["started_at"]) == t0
    assert datetime.fromisoformat(calls[2]["ended_at"]) == t0.replace(second=30)
    assert calls[2]["caller_number"] == "89161234567" and calls[2]["customer_id"] == "C001"


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-1", f"limit={MAX_PAGE + 1}", "limit=abc", "limit=", "offset=-1", "offset=x", "limit=1.5"],
)
async def test_bad_paging_is_400(client, query):
    body = await get_json(client, f"/api/v1/calls?{query}", status=400)
    assert_error(body, "bad_query")


async def test_call_timeline_tells_the_whole_call_in_order(client, harness):
    call_id, variables = await place_call(harness, "+79161234567", ["1"])
    body = await get_json(client, f"/api/v1/calls/{call_id}/timeline")
    call = body["call"]
    assert call["call_id"] == call_id
    assert (call["outcome"], call["reason"], call["customer_id"]) == ("order_placed", "order_placed", "C001")
    assert call["order_id"] == variables["IVR_ORDER_ID"]

    events = body["events"]
    assert all(e["call_id"] == call_id for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    stamps = [datetime.fromisoformat(e["at"]) for e in events]
    assert stamps == sorted(stamps) and all(s.utcoffset() is not None for s in stamps)

    kinds = [e["kind"] for e in events]
    assert kinds[0] == "call.started" and kinds[-1] == "call.ended"
    assert kinds.index("prompt.played") < kinds.index("dtmf.received") < kinds.index("order.created")
    texts = [e["data"]["text"] for e in events if e["kind"] == "prompt.played"]
    assert texts[0].startswith("Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки воды")
    assert any("одна тысяча четыреста рублей" in t for t in texts[1:])
    assert [e["data"]["digits"] for e in events if e["kind"] == "dtmf.received"] == ["1"]
    created = next(e for e in events if e["kind"] == "order.created")
    assert created["data"]["order_id"] == variables["IVR_ORDER_ID"]
    ended = events[-1]["data"]
    assert (ended["outcome"], ended["reason"]) == ("order_placed", "order_placed")


async def test_timeline_of_an_unknown_call_is_404(client, harness):
    await place_call(harness, "+79990000000", [])
    body = await get_json(client, "/api/v1/calls/no-such-call/timeline", status=404)
    assert_error(body, "call_not_found")


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v2/calls", "/", "/favicon.ico"])
async def test_unknown_route_is_404_json(client, path):
    body = await get_json(client, path, status=404)
    assert_error(body, "not_found")


async def test_wrong_method_is_405_json(client):
    response = await client.post("/api/v1/calls", headers=AUTH, json={})
    assert response.status == 405
    assert_error(await response.json(), "method_not_allowed")


class ExplodingStore:
    """The real store, except that one method fails the way a broken database does."""

    SECRET = "password=hunter2 at db.internal"

    def __init__(self, store, failing: str) -> None:
        self._store = store
        self._failing = failing

    def __getattr__(self, name):
        if name == self._failing:

            async def fail(*args, **kwargs):
                raise RuntimeError(f"connection lost: {self.SECRET}")

            return fail
        return getattr(self._store, name)


@pytest.mark.parametrize(
    ("failing", "path"),
    [
        ("list_calls", "/api/v1/calls"),
        ("get_customer_card", "/api/v1/customers/C001"),
        ("get_call", "/api/v1/calls/x/timeline"),
    ],
)
async def test_a_store_failure_is_500_json_without_details(demo_store, failing, path):
    client = await _client(ExplodingStore(demo_store, failing))
    try:
        response = await client.get(path, headers=AUTH)
        text = await response.text()
        assert response.status == 500
        assert response.content_type == "application/json"
        assert_error(await response.json(), "internal_error")
        for leak in ("Traceback", "RuntimeError", "hunter2", "connection lost", ".py"):
            assert leak not in text
        # the other endpoints still answer from the real store
        other = "/api/v1/customers/C001" if failing != "get_customer_card" else "/api/v1/calls"
        await get_json(client, other)
    finally:
        await client.close()
