"""The operator's screen pop, end to end: a caller presses 0 in the robot's menu (FastAGI), Asterisk's
side of the same call arrives over AMI (the captured trace), and op1's open /operator page shows
the card within ~2 s; op1 repeats the customer's last order from the card and places a new one
from the form, and every order exists exactly once however often the buttons are pressed."""

from __future__ import annotations

import re
import time

from playwright.async_api import expect

from tests.e2e.conftest import AMI_TRACES, e2e, needs_chromium, new_page, screenshot, sign_in
from tests.fakeami import load_trace_events

pytestmark = [e2e, needs_chromium]

LINKEDID = "1795751090.30"  # the escalated call of menu_operator_senddtmf.txt
ORDER_TEXT = re.compile(r"Заказ (A-\d+) оформлен, счёт (\S+), сумма")


def split_trace() -> tuple[list, list, list]:
    """The trace cut after the queue rings op1 (AgentCalled) and after op1 answers (AgentConnect)."""
    events = load_trace_events(AMI_TRACES / "menu_operator_senddtmf.txt")
    called = next(i for i, e in enumerate(events) if e.get("Event") == "AgentCalled")
    connected = next(i for i, e in enumerate(events) if e.get("Event") == "AgentConnect")
    return events[: called + 1], events[called + 1 : connected + 1], events[connected + 1 :]


async def test_escalated_call_pops_the_card_and_orders_are_placed_once(browser, console):
    ringing_part, answer_part, rest = split_trace()
    page = await new_page(browser, console)
    await sign_in(page, "op1")
    card = page.locator("#call-card")
    await expect(card).to_have_attribute("data-operator", "101")
    await expect(page.locator("#card-body")).to_contain_text("Сейчас звонка нет")
    # the WebSocket feed is up (it sends the current card at once)
    await expect(page.locator("#feed-status")).to_contain_text("обновлено")

    # the robot's part: Алексей Сергеевич (C001) calls and presses 0
    fake = await console.call("+79161234567", ["0"], uniqueid=LINKEDID)
    assert fake.variables["IVR_RESULT"] == "operator" and fake.variables["IVR_REASON"] == "caller_request"
    await console.call_row(LINKEDID, "operator")
    await expect(page.locator("#card-body")).to_contain_text("Сейчас звонка нет")  # nothing pops before AMI

    # Asterisk's part: the caller joins the queue, the queue rings Local/101@operator-agent/n
    started = time.monotonic()
    await console.fake_ami.push(ringing_part)
    await expect(page.locator("#call-state")).to_have_text("Звонит", timeout=2_000)
    await expect(page.locator("#card-body h2 a").first).to_have_text("Иванов Алексей Сергеевич", timeout=2_000)
    popped_after = time.monotonic() - started
    assert popped_after < 2.0, f"the card took {popped_after:.2f} s"
    body = page.locator("#card-body")
    await expect(body.locator("strong.caller")).to_have_text("+79161234567")
    await expect(body.locator("strong.reason")).to_have_text("клиент попросил оператора")
    steps = [s.strip() for s in await body.locator("ol.ivr-path li").all_inner_texts()]
    heard = [s for s in steps if s.startswith("Робот сказал:")]
    assert heard and heard[0].startswith("Робот сказал: Здравствуйте, Алексей Сергеевич."), steps
    assert "Нажаты клавиши: «0»" in steps, steps
    assert any(s.startswith("Передан оператору:") and "клиент попросил оператора" in s for s in steps), steps
    last_orders = body.locator("table.last-orders")
    await expect(last_orders).to_contain_text("H-1013")
    await expect(last_orders).to_contain_text("4 × бутылка воды «Жемчужная роса» 19 л")
    assert await page.locator("#order-form input[name=customer_id]").input_value() == "C001"

    # op1 answers: same card, now "talking"
    await console.fake_ami.push(answer_part)
    await expect(page.locator("#call-state")).to_have_text("Разговор")
    await screenshot(page, console, "b-operator-card")

    # repeat the last order (H-1013: 4 × WATER-19) with a double click
    repeat = body.locator("tr:has(td:text-is('H-1013')) button.repeat-order")
    await repeat.dblclick()
    result = body.locator("tr:has(td:text-is('H-1013')) .repeat-result")
    await expect(result).to_have_text(ORDER_TEXT)
    text = await result.inner_text()
    order_id = ORDER_TEXT.search(text).group(1)
    assert "(уже был оформлен)" not in text
    (placed,) = await console.operator_orders("C001")
    assert placed.order_id == order_id
    assert [(line.sku, line.quantity) for line in placed.lines] == [("WATER-19", 4)]
    assert placed.invoice is not None and placed.invoice.number in text

    # the call ends: the card is redrawn (state "free", new buttons); pressing "repeat" again on the
    # redrawn card replays the same idempotency key and shows the same order, not a second one
    await console.fake_ami.push(rest)
    await expect(page.locator("#call-state")).to_have_text("Свободен")
    await console.call_row(LINKEDID, "operator_answered")
    repeat = body.locator("tr:has(td:text-is('H-1013')) button.repeat-order")
    await expect(repeat).to_be_enabled()
    await repeat.click()
    await expect(result).to_contain_text(f"Заказ {order_id} оформлен")
    await expect(result).to_contain_text("(уже был оформлен)")
    assert [o.order_id for o in await console.operator_orders("C001")] == [order_id]

    # a new order from the form (customer prefilled from the card): 2 × WATER-5, submitted twice fast,
    # then once more after it went through
    form = page.locator("#order-form")
    await form.locator("select[name=sku]").select_option("WATER-5")
    await form.locator("input[name=quantity]").fill("2")
    await page.locator("#place-order").dblclick()
    outcome = page.locator("#order-result")
    await expect(outcome).to_have_text(ORDER_TEXT)
    new_id = ORDER_TEXT.search(await outcome.inner_text()).group(1)
    assert new_id != order_id
    await page.locator("#place-order").click()
    await expect(outcome).to_contain_text("(уже был оформлен)")
    assert ORDER_TEXT.search(await outcome.inner_text()).group(1) == new_id
    orders = {o.order_id: o for o in await console.operator_orders("C001")}
    assert sorted(orders) == sorted([order_id, new_id]), orders
    assert [(line.sku, line.quantity) for line in orders[new_id].lines] == [("WATER-5", 2)]
    await screenshot(page, console, "b-operator-orders")

    # the customer's page lists both, marked as placed by an operator
    await page.goto("/customers/C001")
    for number in (order_id, new_id):
        await expect(page.locator("main")).to_contain_text(number)
    assert page.js_errors == [], page.js_errors
