"""The invoice, end to end: a company customer (ООО «Ромашка», C002) repeats its last order by phone
(FastAGI), an operator opens the customer's card in Chromium, finds the invoice link on the order
and opens it; the PDF the browser gets is a счёт на оплату with every field a bookkeeper checks:
the seller's bank block, the buyer's ИНН/КПП, the goods, the 22 % VAT of a 2026 delivery and the
amount in words."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from ivr.settings import load_settings
from ivr.web.console.deps import DEPS_KEY
from ivr.web.console.invoice_pdf import amount_in_words, date_in_words, rubles
from tests.e2e.conftest import e2e, needs_chromium, new_page, screenshot, sign_in
from tests.pdftext import pdf_lines

pytestmark = [e2e, needs_chromium]

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "ivr.example.toml"
ROMASHKA_PHONE = "+79031112233"
MOSCOW = ZoneInfo("Europe/Moscow")  # delivery.timezone: the invoice's dates are the depot's


async def test_the_invoice_link_on_the_customer_card_opens_a_real_invoice(browser, console):
    # the seller's requisites as an admin's [seller] section sets them (the fixture runs on the defaults)
    console.service.web_app[DEPS_KEY].seller = load_settings(config_file=EXAMPLE_CONFIG, environ={}).seller

    fake = await console.call(ROMASHKA_PHONE, ["1"])  # "1": repeat the last order
    assert fake.variables["IVR_RESULT"] == "done", fake.variables
    order_id = fake.variables["IVR_ORDER_ID"]
    card = await console.store.get_customer_card("C002")
    (order,) = [o for o in card.orders if o.order_id == order_id]
    invoice = order.invoice
    assert invoice is not None

    page = await new_page(browser, console)
    await sign_in(page, "op1")
    await page.goto("/customers/C002")
    row = page.locator("#orders tr", has_text=order_id)
    link = row.locator("a.invoice")
    await expect(link).to_have_text(invoice.number)
    await screenshot(page, console, "i-invoice-link")

    # the person clicks the link: a new tab opens on the invoice's PDF
    async with page.context.expect_page() as opened:
        await link.click()
    tab = await opened.value
    href = await link.get_attribute("href")
    assert href is not None and unquote(href) == f"/customers/C002/invoices/{invoice.number}.pdf"
    # what that tab receives, with the same signed-in cookies (Chromium shows PDFs in a plugin page
    # whose text Playwright cannot read)
    response = await page.context.request.get(href)
    assert response.ok and response.headers["content-type"] == "application/pdf"
    body = await response.body()
    assert body.startswith(b"%PDF")
    text = " ".join(pdf_lines(body))

    ordered = order.ordered_at.astimezone(MOSCOW).date()
    expected = [
        "ПАО СБЕРБАНК г. Москва", "Банк получателя", "БИК 044525225", "Сч. № 30101810400000000225",
        "ИНН 7701234567 КПП 770101001 Сч. № 40702810938000012345", "ООО «Чистая вода» Получатель",
        f"Счёт на оплату № {invoice.number} от {date_in_words(ordered)}",
        "Поставщик (Исполнитель): ООО «Чистая вода», ИНН 7701234567, КПП 770101001",
        "Покупатель (Заказчик): ООО «Ромашка», ИНН 7705123456, КПП 770501001, Москва, Ленинский пр-т, д. 40",
        f"Основание: Заказ № {order_id} от {ordered:%d.%m.%Y}, доставка {order.delivery_date:%d.%m.%Y}",
        "№ Товары (работы, услуги) Кол-во Ед. Цена Сумма",
        *(f"{n} {line.unit[:1].upper()}{line.unit[1:]} {line.name} {line.quantity} шт {rubles(line.unit_price)} "
          f"{rubles(line.amount)}" for n, line in enumerate(order.lines, start=1)),
        f"Итого: {rubles(invoice.total)} В том числе НДС 22 %: {rubles(invoice.vat_amount)} "
        f"Всего к оплате: {rubles(invoice.total)}",
        f"Всего наименований {len(order.lines)}, на сумму {rubles(invoice.total)} руб.",
        amount_in_words(invoice.total),
        "Руководитель Петров П. П. Бухгалтер Сидорова А. А.",
    ]
    assert [needle for needle in expected if needle not in text] == [], text
    assert invoice.number.startswith(f"СЧ-{ordered.year}-")
    assert page.js_errors == [], page.js_errors
    await tab.close()
    await page.context.close()
