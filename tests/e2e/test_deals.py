"""A deal end to end (issue 11): a customer repeats their order by phone (FastAGI), an operator finds
the deal on the board's "Новая" tab in Chromium, opens it (the call and its keys on its timeline),
moves it to "В доставке" with the form, and sees the move with their name; then the customer's
card links the deal. The pages run under the console's CSP without a script error."""

from __future__ import annotations

from playwright.async_api import expect

from tests.e2e.conftest import e2e, needs_chromium, new_page, screenshot, sign_in

pytestmark = [e2e, needs_chromium]


async def test_an_operator_moves_the_deal_a_call_made(browser, console):
    fake = await console.call("+79161234567", ["1"])
    assert fake.variables["IVR_RESULT"] == "done", fake.variables
    order_id = fake.variables["IVR_ORDER_ID"]
    call_id = fake.channel_vars["CHANNEL(linkedid)"]
    await console.call_row(call_id, "order_placed")
    deal = await console.store.deal_of_order(order_id)

    page = await new_page(browser, console)
    await sign_in(page, "op1")
    await page.goto("/deals?stage=new")
    row = page.locator(f"#deal-{deal.deal_id}")
    await expect(row).to_contain_text(f"Заказ {order_id}")
    await row.locator("a", has_text=f"Заказ {order_id}").click()
    await expect(page.locator("#deal-stage")).to_have_text("Новая")
    await expect(page.locator("#timeline")).to_contain_text(call_id)
    await expect(page.locator("#deal-calls")).to_contain_text(call_id)

    await page.select_option("#stage-form select[name=stage]", "in_delivery")
    await page.click("#stage-save")
    await expect(page.locator("#done")).to_have_text("Стадия сохранена.")
    await expect(page.locator("#deal-stage")).to_have_text("В доставке")
    await expect(page.locator("#timeline tr.kind-deal-stage_changed")).to_contain_text("«Новая» → «В доставке»")
    await screenshot(page, console, "d-deal-moved")

    await page.goto("/customers/C001")
    await expect(page.locator(f'#customer-deals tr[data-deal="{deal.deal_id}"]')).to_contain_text("В доставке")
    assert page.js_errors == [], page.js_errors
    await page.context.close()
