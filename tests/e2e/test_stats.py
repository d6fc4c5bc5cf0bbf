"""A supervisor watches /stats change after a call: one repeat order by phone (FastAGI, key 1) adds one
call and one robot order to today's figures."""

from __future__ import annotations

from playwright.async_api import expect

from tests.e2e.conftest import e2e, needs_chromium, new_page, screenshot, sign_in

pytestmark = [e2e, needs_chromium]


async def tile(page, title: str) -> str:
    """The big value of the /stats tile titled ``title``."""
    box = page.locator("section.tiles .tile").filter(has=page.locator("div.muted", has_text=title)).first
    return (await box.locator(".big").inner_text()).strip()


async def test_a_repeat_order_call_shows_up_in_the_statistics(browser, console):
    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    response = await page.goto("/stats")
    assert response is not None and response.status == 200
    await expect(page.locator("main h1")).to_have_text("Статистика звонков")
    calls_before = int(await tile(page, "Звонков"))
    orders_before = int(await tile(page, "Заказов роботом"))

    fake = await console.call("+79161234567", ["1"])
    assert fake.variables["IVR_RESULT"] == "done" and fake.variables["IVR_REASON"] == "order_placed"
    order_id = fake.variables["IVR_ORDER_ID"]
    await console.call_row(fake.channel_vars["UNIQUEID"], "order_placed")

    response = await page.reload()
    assert response is not None and response.status == 200
    assert int(await tile(page, "Звонков")) == calls_before + 1
    assert int(await tile(page, "Заказов роботом")) == orders_before + 1
    if orders_before == 0:  # a fresh database: the amount under the tile is this order's, 4 × 350 ₽
        box = page.locator("section.tiles .tile").filter(has=page.locator("div.muted", has_text="Заказов роботом"))
        await expect(box.first).to_contain_text("на сумму 1 400,00 ₽")
    outcomes = page.locator("table.outcomes")
    await expect(outcomes).to_contain_text("order_placed")
    await screenshot(page, console, "d-supervisor-stats")

    # the call is in the log with its order
    await page.goto("/calls")
    await expect(page.locator("main")).to_contain_text(order_id)
    assert page.js_errors == [], page.js_errors
