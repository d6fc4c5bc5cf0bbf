"""Deals in the console and the API (issue 11), over real HTTP on both databases: the list by stage,
the deal page (its calls, the recording player for supervisors only, its timeline), the stage form
(who and when on the timeline, CSRF as every form), the links from the customer and order pages,
an operator's order owned by them, and ``/api/v1/deals`` with its errors in the API's form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from tests.console.conftest import API_TOKEN, PASSWORD, login, start_client
from tests.console.test_order_pages import FORM_KEY, order_form

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def demo(store):
    assert (await load_demo_data(store.sessions)).ok
    return store


async def _robot_order_with_a_recorded_call(store):
    placed = await store.place_order(idempotency_key="call-9:repeat", customer_id="C001", lines=[("WATER-19", 2)],
                                     source="ivr", call_id="call-9")
    now = datetime.now(UTC)
    await store.record_call_start(call_id="call-9", caller_number="+79161234567", normalized_number="+79161234567",
                                  customer_id="C001", channel="PJSIP/trunk-1", script="repeat-order", started_at=now)
    await store.record_call_end("call-9", facts=facts_implying("order_placed", placed.order.order_id), reason=None,
                                ended_at=now, customer_id="C001", order_id=placed.order.order_id, events=[
                                    TimelineEventIn(at=now, call_id="call-9", customer_id="C001",
                                                    kind="dtmf.received", data={"step": "menu", "digits": "1"})])
    await store.update_call("call-9", recording_path="call-9.wav", recording_seconds=12.0)
    return placed


async def test_the_deal_page_shows_its_calls_timeline_and_moves_stages(demo, console_client):
    placed = await _robot_order_with_a_recorded_call(demo)
    deal_id = placed.deal_id
    csrf = await login(console_client, "op1", PASSWORD)
    page = await console_client.get(f"/deals/{deal_id}")
    html = await page.text()
    assert page.status == 200 and f"Заказ {placed.order.order_id}" in html and 'data-stage="new"' in html
    assert 'href="/calls/call-9"' in html and "«1»" in html  # the call's keys on the deal's timeline
    assert "Сделка создана" in html
    assert 'class="player"' not in html  # operators never hear recordings
    # the stage form: CSRF as every form, an unknown stage refused, a move on the timeline with who
    assert (await console_client.post(f"/deals/{deal_id}/stage", data={"stage": "paid"})).status == 403
    bad = await console_client.post(f"/deals/{deal_id}/stage", data={"csrf_token": csrf, "stage": "shipped"})
    assert bad.status == 422 and "Нет такой стадии сделки: «shipped»" in await bad.text()
    moved = await console_client.post(f"/deals/{deal_id}/stage", allow_redirects=False,
                                      data={"csrf_token": csrf, "stage": "in_delivery"})
    assert moved.status == 303 and moved.headers["Location"] == f"/deals/{deal_id}?done=stage"
    html = await (await console_client.get(moved.headers["Location"])).text()
    assert "Стадия сохранена." in html and 'id="deal-stage" data-stage="in_delivery">В доставке' in html
    assert "Ольга Операторова (op1): «Новая» → «В доставке»" in html
    # the list by stage
    listed = await (await console_client.get("/deals", params={"stage": "in_delivery"})).text()
    assert f'id="deal-{deal_id}"' in listed and "В доставке" in listed
    assert f'id="deal-{deal_id}"' not in await (await console_client.get("/deals?stage=new")).text()
    assert (await console_client.get("/deals?stage=nonsense")).status == 404
    # links from the customer's and the order's pages
    customer = await (await console_client.get("/customers/C001")).text()
    assert f'href="/deals/{deal_id}"' in customer and "сделка: В доставке" in customer
    order = await (await console_client.get(f"/customers/C001/orders/{placed.order.order_id}")).text()
    assert f'id="order-deal" href="/deals/{deal_id}"' in order


async def test_supervisors_hear_the_deals_recordings(demo, console_client):
    placed = await _robot_order_with_a_recorded_call(demo)
    await login(console_client, "sup1", PASSWORD)
    html = await (await console_client.get(f"/deals/{placed.deal_id}")).text()
    assert 'data-src="/calls/call-9/recording"' in html and "/static/player.js" in html


async def test_an_operators_order_from_the_console_is_their_deal(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    form = await console_client.get("/customers/C006/order")
    key = FORM_KEY.search(await form.text()).group(1)
    placed = await console_client.post("/customers/C006/order", allow_redirects=False,
                                       data=order_form(csrf, key, {"WATER-19": 1}))
    assert placed.status == 303
    [deal] = await demo.list_deals(customer_id="C006")
    assert (deal.owner, deal.stage) == ("op1", "new")


async def test_the_deals_api(demo, console_app):
    placed = await _robot_order_with_a_recorded_call(demo)
    client = await start_client(console_app)
    try:
        listed = await client.get("/api/v1/deals", params={"customer": "C001", "stage": "new", "limit": "500"},
                                  headers=AUTH)
        body = await listed.json()
        assert listed.status == 200 and placed.deal_id in [d["deal_id"] for d in body["deals"]]
        assert all(d["customer_id"] == "C001" and d["stage"] == "new" for d in body["deals"])
        bad = await client.get("/api/v1/deals", params={"stage": "shipped"}, headers=AUTH)
        assert bad.status == 422 and (await bad.json())["error"]["id"] == "invalid_stage"
        assert (await client.get("/api/v1/deals", params={"limit": "0"}, headers=AUTH)).status == 400

        one = await (await client.get(f"/api/v1/deals/{placed.deal_id}", headers=AUTH)).json()
        assert one["deal"]["amount"] == str(placed.invoice.total) and one["deal"]["order_id"] == placed.order.order_id
        assert {"deal.created", "dtmf.received"} <= {e["kind"] for e in one["events"]}
        assert (await client.get("/api/v1/deals/999999", headers=AUTH)).status == 404
        assert (await client.get("/api/v1/deals/abc", headers=AUTH)).status == 404

        url = f"/api/v1/deals/{placed.deal_id}/stage"
        refused = await client.post(url, json={"stage": "shipped"}, headers=AUTH)
        error = (await refused.json())["error"]
        assert refused.status == 422 and error["id"] == "invalid_stage" and error["fields"][0]["field"] == "stage"
        assert (await client.post(url, data="{", headers=AUTH)).status == 400
        assert (await client.post(url, json={"stage": "paid", "by": ""}, headers=AUTH)).status == 422
        moved = await client.post(url, json={"stage": "paid", "by": "1C"}, headers=AUTH)
        deal = (await moved.json())["deal"]
        assert moved.status == 200 and (deal["stage"], deal["closed"]) == ("paid", True)
        [event] = [e for e in await demo.deal_timeline(placed.deal_id) if e.kind == "deal.stage_changed"]
        assert (event.data["by"], event.data["previous_stage"]) == ("1C", "new")
    finally:
        await client.close()
