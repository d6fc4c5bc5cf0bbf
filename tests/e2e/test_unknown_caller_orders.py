"""Issue 10, end to end in Chromium: a number the robot does not know calls (the robot hands it to an
operator at once), op1's live card offers "Новый клиент с этим номером"; op1 makes the customer with
the number prefilled, orders from the customer's page (the order is linked to the call), is asked
"Повторный заказ?" when placing the same order again and declines, then cancels the order with a
reason and sees it on the customer's timeline; the robot now knows the caller."""

from __future__ import annotations

import re

from playwright.async_api import expect

from ivr.web.console.formats import date_text
from tests.e2e.conftest import e2e, needs_chromium, new_page, screenshot, sign_in
from tests.e2e.test_operator_screen_pop import LINKEDID, split_trace

pytestmark = [e2e, needs_chromium]

UNKNOWN = "+79260001122"
TRACE_CALLER = "+79161234567"  # C001 in the demo data: the trace's caller becomes the unknown number


def as_unknown_caller(events: list) -> list:
    return [{k: v.replace(TRACE_CALLER, UNKNOWN) if isinstance(v, str) else v for k, v in e.items()} for e in events]


async def test_an_unknown_caller_becomes_a_customer_who_orders_and_the_order_is_cancelled(browser, console):
    ringing_part = as_unknown_caller(split_trace()[0])
    page = await new_page(browser, console)
    await sign_in(page, "op1")
    await expect(page.locator("#feed-status")).to_contain_text("обновлено")

    fake = await console.call(UNKNOWN, [], uniqueid=LINKEDID)
    assert fake.variables["IVR_RESULT"] == "operator" and fake.variables["IVR_REASON"] == "unknown_number"
    await console.fake_ami.push(ringing_part)
    body = page.locator("#card-body")
    await expect(body.locator("strong.caller")).to_have_text(UNKNOWN)
    await expect(body.locator("strong.reason")).to_have_text("номер не найден в базе")
    await expect(body).to_contain_text("Клиент не определён.")
    await screenshot(page, console, "i10-unknown-caller-card")

    # a new customer with the number prefilled
    await body.locator("#new-customer-from-call").click()
    form = page.locator("#new-customer")
    await expect(form.locator("input[name=number]")).to_have_value(UNKNOWN)
    await form.locator("input[name=last_name]").fill("Сидорова")
    await form.locator("input[name=first_name]").fill("Мария")
    await form.locator("input[name=address]").fill("ул. Лесная, 5, кв. 12")
    await page.locator("#create-customer").click()
    await expect(page.locator("#done")).to_have_text("Клиент создан.")
    await expect(page.locator("h1")).to_contain_text("Сидорова Мария")
    await expect(page.locator("#customer")).to_contain_text(UNKNOWN)
    # the call it was made from is on the customer's timeline (the robot's lookup included)
    await expect(page.locator("#timeline")).to_contain_text("Поиск по номеру")

    # then the order, from the customer's page
    await page.locator("#order-button").click()
    await page.locator("input[data-sku='WATER-19']").fill("2")
    await page.locator("#place-order").click()
    await expect(page.locator("#done")).to_contain_text(re.compile(r"Заказ A-\d+ оформлен\."))
    order_id = re.search(r"A-\d+", await page.locator("#done").inner_text()).group(0)
    customer_id = re.search(r"/customers/([^/?#]+)", page.url).group(1)
    card = await console.store.get_customer_card(customer_id)
    [placed] = card.orders
    assert placed.order_id == order_id and [(line.sku, line.quantity) for line in placed.lines] == [("WATER-19", 2)]
    row = page.locator(f"#orders tr[data-order='{order_id}']")
    await expect(row).to_contain_text(date_text(placed.delivery_date))  # the delivery date is shown
    lookup = await console.store.lookup_caller(UNKNOWN)
    assert lookup.status == "found" and lookup.last_order.order_id == order_id  # the robot knows them now

    # the same order again: "Повторный заказ?" — declined, nothing placed
    await page.locator("#order-button").click()
    await page.locator("input[data-sku='WATER-19']").fill("2")
    await page.locator("#place-order").click()
    await expect(page.locator("#duplicate-warning")).to_contain_text("Повторный заказ?")
    await expect(page.locator("#duplicate-warning")).to_contain_text(order_id)
    await screenshot(page, console, "i10-repeat-order")
    await page.locator("#duplicate-warning a").click()
    assert len((await console.store.get_customer_card(customer_id)).orders) == 1

    # cancel it with a reason; the customer's page says so, on the timeline too
    await page.locator(f"#orders tr[data-order='{order_id}'] a.change-order").click()
    await expect(page.locator("#delivery-date")).to_have_text(date_text(placed.delivery_date))
    await page.locator("#cancel-order input[name=reason]").fill("клиент уезжает на дачу")
    await page.locator("#cancel-order-button").click()
    await expect(page.locator("#done")).to_have_text(f"Заказ {order_id} отменён.")
    await expect(row.locator(".order-status")).to_have_text("отменён")
    timeline = page.locator("#timeline tr.kind-order-cancelled")
    await expect(timeline).to_contain_text("Заказ отменён")
    await expect(timeline).to_contain_text(f"Ольга Операторова (op1) отменил(а) заказ {order_id}")
    await expect(timeline).to_contain_text("Причина: клиент уезжает на дачу")
    await screenshot(page, console, "i10-order-cancelled")
    assert (await console.store.get_order(order_id)).cancelled
    assert page.js_errors == [], page.js_errors
