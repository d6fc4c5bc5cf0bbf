"""Every page shows business time (hours.timezone, Moscow here) in one format, whatever UTC says, and
speaks Russian: a call at 23:30 Moscow (20:30 UTC) and an order at 01:30 Moscow (22:30 UTC the day
before) on /calls, the call page, the customer card, the operator card's last orders, call-back due
times and the wallboard clock; roles in Russian; and a sweep of every page of a seeded store for
"key=value" timeline lines, "1400.00"-style money and "UTC". Both backends."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from ivr.web.console.formats import NBSP
from ivr.web.console.monitoring import wallboard_data
from tests.console.conftest import PASSWORD, login, start_client
from tests.console.test_operator_pages import board_of, page_data, ring

LATE = datetime(2026, 11, 28, 20, 30, tzinfo=UTC)  # 23:30 in Moscow, the same day in UTC
EARLY = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)  # 01:30 on the 28th in Moscow, the 27th in UTC
CALL_ID = "1764361800.5"
LATE_TEXT = "28 ноября 2026, 23:30"
EARLY_TEXT = "28 ноября 2026, 01:30"


@pytest.fixture
async def seeded(store):
    """C001 called at 23:30 Moscow, was given an order at 01:30 Moscow and one at 23:30 on the call,
    and asked to be called back by 23:30."""
    assert (await load_demo_data(store.sessions)).ok
    await store.place_order(idempotency_key="early", customer_id="C001", lines=[("WATER-19", 4)], source="operator",
                            now=EARLY)
    await store.record_call_start(call_id=CALL_ID, caller_number="+79161234567", normalized_number="+79161234567",
                                  customer_id="C001", channel="PJSIP/trunk-1", script="repeat-order", started_at=LATE)
    placed = await store.place_order(idempotency_key="late", customer_id="C001", lines=[("WATER-19", 4)],
                                     source="ivr", call_id=CALL_ID, now=LATE + timedelta(seconds=40))
    task, _ = await store.open_callback_task(customer_id="C001", number="+79161234567", reason="callback_requested",
                                             due_at=LATE, call_id=CALL_ID)
    events = [
        ("call.started", {"caller": "+79161234567", "channel": "PJSIP/trunk-1"}),
        ("caller.identified", {"status": "found", "number": "+79161234567"}),
        ("prompt.played", {"step": "menu", "text": "Здравствуйте"}),
        ("dtmf.received", {"step": "menu", "digits": "1", "timed_out": False}),
        ("order.created", {"order_id": placed.order.order_id, "invoice": placed.invoice.number,
                           "total": str(placed.order.total)}),
        ("callback.created", {"task_id": task.task_id, "reason": "callback_requested", "due_at": LATE.isoformat()}),
        ("call.ended", {"outcome": "order_placed", "reason": "order_placed", "step": "goodbye"}),
        ("cdr", {"uniqueid": CALL_ID, "source": "+79161234567", "destination": "s", "duration": 95, "billsec": 60,
                 "disposition": "ANSWERED", "start": "2026-11-28 20:30:00"}),
        ("call.transferred", {"type": "blind", "result": "Success", "extension": "102"}),
        ("call.error", {"step": "menu", "error": "RuntimeError('boom')"}),
    ]
    await store.add_timeline_events([
        TimelineEventIn(at=LATE + timedelta(seconds=i), call_id=CALL_ID, customer_id="C001", kind=k, data=d)
        for i, (k, d) in enumerate(events)
    ])
    await store.record_call_end(CALL_ID, facts=facts_implying("order_placed"), reason="order_placed",
                                ended_at=LATE + timedelta(minutes=2), customer_id="C001",
                                order_id=placed.order.order_id)
    return placed


def visible(page: str) -> str:
    """The text a person reads: no tags, no scripts, entities decoded."""
    page = re.sub(r"<script\b.*?</script>", " ", page, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", page))


async def test_calls_list_and_call_page_show_moscow_time(seeded, console_client):
    await login(console_client, "sup1", PASSWORD)
    page = await (await console_client.get("/calls?from=2026-11-28&to=2026-11-28")).text()
    assert f"{LATE_TEXT}:00" in page and "20:30" not in visible(page)
    # the Moscow day filters it: it is not a call of the 29th, nor missing from the 28th
    assert CALL_ID not in await (await console_client.get("/calls?from=2026-11-29&to=2026-11-29")).text()

    page = visible(await (await console_client.get(f"/calls/{CALL_ID}")).text())
    assert f"Звонок {LATE_TEXT}:00" in page
    assert "23:30:00" in page and "23:30:05" in page  # timeline times
    assert f"перезвонить до {LATE_TEXT}" in page
    assert "звонок отвечен, +79161234567 → s" in page and "перевод без консультации на 102" in page
    assert "RuntimeError" not in page and "сбой робота на шаге «меню»" in page


async def test_customer_card_shows_moscow_dates(seeded, console_client):
    await login(console_client, "op1", PASSWORD)
    page = visible(await (await console_client.get("/customers/C001")).text())
    assert f"{LATE_TEXT}" in page  # the order on the call, and the call in the timeline
    assert EARLY_TEXT in page  # 22:30 UTC on the 27th is the 28th in Moscow
    assert "27 ноября 2026, 22:30" not in page and "20:30" not in page
    assert f"на 1{NBSP}" in page or f",00{NBSP}₽" in page


async def test_operator_card_orders_and_callback_due_in_moscow_time(seeded, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app)
        await login(client, "op1", PASSWORD)
        page = await (await client.get("/operator")).text()
    finally:
        await client.close()
    shown = visible(page)
    orders = shown[shown.index("Последние заказы"):shown.index("Новый заказ")]
    assert LATE_TEXT in orders and EARLY_TEXT in orders
    tasks = shown[shown.index("Перезвонить ("):]
    assert LATE_TEXT in tasks
    # the live card carries the same words for operator.js
    card = page_data(page)["card"]
    assert [o["ordered_at_text"] for o in card["last_orders"]][:2] == [LATE_TEXT, EARLY_TEXT]
    assert card["last_orders"][0]["total_text"].endswith(f",00{NBSP}₽")
    assert page_data(page)["labels"]["errors"]["customer_not_found"] == "Клиент с таким номером не найден."
    assert board_of(console_app) is not None


async def test_feed_card_carries_moscow_words(seeded, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app)
        await login(client, "op1", PASSWORD)
        card = await (await client.get("/api/v1/operators/101/current")).json()
    finally:
        await client.close()
    assert card["last_orders"][0]["ordered_at_text"] == LATE_TEXT


async def test_wallboard_clock_is_business_time(seeded, console_app, console_client):
    from ivr.web.console.deps import DEPS_KEY

    data = await wallboard_data(console_app[DEPS_KEY], now=LATE)
    assert data["clock"] == "23:30:00" and data["timezone"] == "Europe/Moscow"
    await login(console_client, "sup1", PASSWORD)
    page = await (await console_client.get("/wallboard")).text()
    assert "UTC" not in page
    assert re.search(r'id="wb-updated">\d\d:\d\d:\d\d<', page)


async def test_roles_are_shown_in_russian(console_client):
    for username, role in (("op1", "Оператор"), ("sup1", "Старший смены"), ("adm1", "Администратор")):
        await login(console_client, username, PASSWORD)
        page = await (await console_client.get("/customers")).text()
        who = re.search(r'<span class="who">(.*?)</span>', page).group(1)
        assert who.endswith(f"· {role}"), who


async def test_stats_csv_speaks_russian_and_keeps_machine_keys(seeded, console_client):
    await login(console_client, "sup1", PASSWORD)
    body = (await (await console_client.get("/api/v1/stats.csv?from=2026-11-28&to=2026-11-28")).read()).decode(
        "utf-8-sig")
    rows = [line.split(";") for line in body.splitlines()]
    assert rows[0] == ["Показатель", "Значение", "Ключ"]
    assert ["Звонков всего", "1", "calls.total"] in rows
    assert ["Звонков с итогом «Заказ оформлен роботом»", "1", "calls.by_outcome.order_placed"] in rows
    assert ["Интерфейс оператора", "Оператор", "Принято звонков", "Разговор, среднее, с",
            "Ожидание клиентов, среднее, с", "Заказов"] in rows
    assert ["Час", "Звонков"] in rows and ["23", "1"] in rows  # the Moscow hour of the call
    for name, _, key in (r for r in rows[1:] if len(r) == 3):
        assert re.search(r"[А-ЯЁ]", name), (name, key)


# A money amount written with a decimal point ("1400.00"): never on a page (call ids have 10 digits
# before their dot, dates a second dot).
RAW_MONEY = re.compile(r"(?<![\d.])\d{1,7}\.\d\d(?![\d.])")
KEY_VALUE = re.compile(r"\b[a-z_]{2,}=\S")
ENGLISH_ROLE = re.compile(r"·\s*(operator|supervisor|admin)\b")


async def test_sweep_no_raw_lines_money_or_utc_on_any_page(seeded, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app)
        for username in ("op1", "adm1"):
            await login(client, username, PASSWORD)
            pages = ["/operator", "/calls", f"/calls/{CALL_ID}", "/customers?q=C001", "/customers/C001",
                     "/customers/C002"]
            if username == "adm1":
                pages += ["/stats?from=2026-11-27&to=2026-11-28", "/wallboard", "/admin/users"]
            for path in pages:
                response = await client.get(path)
                assert response.status == 200, path
                text = visible(await response.text())
                assert not KEY_VALUE.search(text), (path, KEY_VALUE.search(text))
                assert not RAW_MONEY.search(text), (path, RAW_MONEY.search(text))
                assert not re.search(r"\d ₽", text), path  # a plain space before the rouble sign
                assert "UTC" not in text and not ENGLISH_ROLE.search(text), path
    finally:
        await client.close()
