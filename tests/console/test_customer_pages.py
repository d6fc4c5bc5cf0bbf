"""/customers search, the customer card and the printable invoice PDF, over real HTTP with sign-ins."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest

from crm_bridge.demo import load_demo_data
from crm_bridge.dto import CustomerView, InvoiceView, OrderLineView, OrderView, TimelineEventIn
from crm_bridge.models import Customer, Phone
from ivr.settings import load_settings
from ivr.web.console.formats import date_text
from ivr.web.console.invoice_pdf import (
    InvoiceFontMissing,
    amount_in_words,
    build_invoice_pdf,
    date_in_words,
    percent,
    rubles,
    totals_lines,
)
from tests.console.conftest import PASSWORD, login
from tests.pdftext import pdf_lines

ROLES = ["op1", "sup1", "adm1"]
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # Friday 11:00 Moscow
XSS = "<script>alert(1)</script>"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "ivr.example.toml"


@pytest.fixture
async def demo(store):
    report = await load_demo_data(store.sessions)
    assert report.ok
    return store


async def place(store, customer="C001", key="k-1", lines=(("WATER-19", 3), ("CUPS-100", 1)), call_id=None):
    return await store.place_order(idempotency_key=key, customer_id=customer, lines=list(lines), source="operator",
                                   call_id=call_id, now=NOW)


def invoice_url(customer: str, number: str) -> str:
    return f"/customers/{quote(customer)}/invoices/{quote(number)}.pdf"


# --- pages for every role ----------------------------------------------------------------------


@pytest.mark.parametrize("username", ROLES)
async def test_search_and_card_render_for_every_role(demo, console_client, username):
    await login(console_client, username, PASSWORD)
    page = await console_client.get("/customers", params={"q": "иванов"})
    assert page.status == 200
    html = await page.text()
    assert 'href="/customers/C001"' in html
    assert "Иванов Алексей Сергеевич" in html
    card = await console_client.get("/customers/C001")
    assert card.status == 200
    html = await card.text()
    for text in ("Иванов Алексей Сергеевич", "+79161234567", "Садовая-Кудринская", "русский", "H-1013", "H-0991"):
        assert text in html
    assert card.headers["Cache-Control"] == "no-store"


async def test_pages_need_a_sign_in(demo, console_client):
    for path in ("/customers", "/customers/C001", invoice_url("C001", "СЧ-1")):
        response = await console_client.get(path, allow_redirects=False)
        assert response.status in (302, 303), path
        assert response.headers["Location"].startswith("/login")


async def test_search_by_phone_and_empty_results(demo, console_client):
    await login(console_client, "op1", PASSWORD)
    html = await (await console_client.get("/customers", params={"q": "8 (916) 123-45-67"})).text()
    assert 'href="/customers/C001"' in html
    html = await (await console_client.get("/customers", params={"q": "никтоникогда"})).text()
    assert 'id="no-results"' in html
    assert "никтоникогда" in html
    html = await (await console_client.get("/customers")).text()
    assert 'id="results"' not in html and 'id="no-results"' not in html


async def test_card_shows_orders_lines_totals_source_delivery_and_invoice_links(demo, console_client):
    placed = await place(demo)
    await login(console_client, "op1", PASSWORD)
    html = await (await console_client.get("/customers/C001")).text()
    assert placed.order.order_id in html
    assert "3 × бутылка воды «Жемчужная роса» 19 л" in html
    assert "1\u00a0170,00\u00a0₽" in html  # ivr.web.console.formats: no-break spaces
    assert "оператор" in html  # the source
    assert placed.order.delivery_date is not None
    assert date_text(placed.order.delivery_date) in html  # "29 ноября 2026"
    assert f'href="{invoice_url("C001", placed.invoice.number)}"' in html
    # history orders have no invoice
    assert html.count('class="invoice"') == 1


async def test_a_company_customer_card_shows_the_buyer_of_its_invoices(demo, console_client):
    await login(console_client, "op1", PASSWORD)
    company = await (await console_client.get("/customers/C002")).text()  # demo: ООО «Ромашка»
    assert 'id="company"' in company
    assert "ООО «Ромашка»" in company and "ИНН 7705123456 · КПП 770501001" in company
    person = await (await console_client.get("/customers/C001")).text()
    assert 'id="company"' not in person


async def test_card_timeline_links_calls_and_lists_orders(demo, console_client):
    await demo.record_call_start(call_id="1700000000.42", caller_number="+79161234567",
                                 normalized_number="+79161234567", customer_id="C001", channel="PJSIP/t",
                                 script="repeat-order", started_at=NOW - timedelta(minutes=5))
    await demo.add_timeline_events([
        TimelineEventIn(at=NOW - timedelta(minutes=5), call_id="1700000000.42", customer_id="C001",
                        kind="prompt.played", data={"step": "menu", "text": "Здравствуйте, Алексей Сергеевич."}),
        TimelineEventIn(at=NOW - timedelta(minutes=4), call_id="1700000000.42", customer_id="C001",
                        kind="dtmf.received", data={"step": "menu", "digits": "0"}),
        TimelineEventIn(at=NOW - timedelta(minutes=4), call_id="1700000000.42", customer_id="C001",
                        kind="call.escalated", data={"reason": "caller_request"}),
    ])
    placed = await place(demo, call_id="1700000000.42")
    await login(console_client, "sup1", PASSWORD)
    html = await (await console_client.get("/customers/C001")).text()
    assert 'href="/calls/1700000000.42"' in html
    assert "Здравствуйте, Алексей Сергеевич." in html
    assert "клиент попросил оператора" in html
    timeline = html[html.index('id="timeline"'):]
    # newest first: the order placed after the call comes before the call's prompt
    assert timeline.index(placed.order.order_id) < timeline.index("Здравствуйте, Алексей Сергеевич.")
    assert "H-0991" in timeline  # imported history is in the timeline too


async def test_unknown_customer_is_a_404_page(demo, console_client):
    await login(console_client, "op1", PASSWORD)
    response = await console_client.get("/customers/NOPE-1")
    assert response.status == 404
    html = await response.text()
    assert 'id="not-found"' in html and "NOPE-1" in html


async def test_customer_name_is_escaped_in_the_card_and_the_search(demo, console_client):
    async with demo.sessions() as s:
        evil = Customer(customer_id="X1", last_name=XSS, first_name="<b>Ева</b>", patronymic="",
                        address='"><img src=x onerror=alert(2)>')
        s.add(evil)
        await s.flush()
        s.add(Phone(number="+79260000001", customer_id=evil.id))
        await s.commit()
    await login(console_client, "op1", PASSWORD)
    for response in (await console_client.get("/customers", params={"q": "script"}),
                     await console_client.get("/customers/X1")):
        assert response.status == 200
        html = await response.text()
        assert XSS not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<b>Ева</b>" not in html
        assert "<img src=x" not in html


# --- invoice PDF over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("username", ROLES)
async def test_invoice_pdf_for_its_customer(demo, console_client, username):
    placed = await place(demo)
    await login(console_client, username, PASSWORD)
    response = await console_client.get(invoice_url("C001", placed.invoice.number))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/pdf"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("inline;")
    assert quote(placed.invoice.number + ".pdf", safe="") in disposition
    body = await response.read()
    assert body.startswith(b"%PDF")
    assert body.rstrip().endswith(b"%%EOF")


async def test_invoice_of_another_customer_or_unknown_is_404(demo, console_client):
    placed = await place(demo)
    await login(console_client, "op1", PASSWORD)
    assert (await console_client.get(invoice_url("C002", placed.invoice.number))).status == 404
    assert (await console_client.get(invoice_url("C001", "СЧ-999999"))).status == 404
    assert (await console_client.get(invoice_url("NOPE", placed.invoice.number))).status == 404


# --- the PDF itself ----------------------------------------------------------------------------

SELLER = load_settings(config_file=EXAMPLE_CONFIG, environ={}).seller  # real-looking requisites


def shows(pdf: bytes) -> str:
    """The PDF's text, wrapped lines joined with a space (as multi_cell breaks them at spaces)."""
    return " ".join(pdf_lines(pdf))


async def test_invoice_pdf_shows_every_field_of_a_real_invoice_for_a_company(demo):
    placed = await place(demo, customer="C002")  # ООО «Ромашка»: a company customer in the demo data
    invoice, order, customer = await demo.get_invoice(placed.invoice.number)
    text = shows(build_invoice_pdf(invoice, order, customer, seller=SELLER))
    expected = [
        # the bank block
        "ПАО СБЕРБАНК г. Москва", "Банк получателя", "БИК 044525225", "Сч. № 30101810400000000225",
        "ИНН 7701234567 КПП 770101001 Сч. № 40702810938000012345", "ООО «Чистая вода» Получатель",
        # title, parties, basis
        f"Счёт на оплату № {invoice.number} от 27 ноября 2026 г.",
        "Поставщик (Исполнитель): ООО «Чистая вода», ИНН 7701234567, КПП 770101001, "
        "125009, г. Москва, ул. Тверская, д. 1, офис 10",
        "Покупатель (Заказчик): ООО «Ромашка», ИНН 7705123456, КПП 770501001, "
        "Москва, Ленинский пр-т, д. 40, офис 3, тел.: +79031112233",
        f"Основание: Заказ № {order.order_id} от 27.11.2026, доставка 28.11.2026",
        # the goods table
        "№ Товары (работы, услуги) Кол-во Ед. Цена Сумма",
        "1 Бутылка воды «Жемчужная роса» 19 л 3 шт 350,00 1 050,00",
        "2 Упаковка одноразовых стаканчиков, по 100 штук 1 шт 120,00 120,00",
        # totals: delivered in 2026, prices include VAT at 22 % (1170 × 22 / 122 = 210.98)
        "Итого: 1 170,00 В том числе НДС 22 %: 210,98 Всего к оплате: 1 170,00",
        "Всего наименований 2, на сумму 1 170,00 руб.",
        "Одна тысяча сто семьдесят рублей 00 копеек",
        "Руководитель Петров П. П. Бухгалтер Сидорова А. А.",
    ]
    assert [needle for needle in expected if needle not in text] == []
    assert invoice.vat_rate == Decimal("22") and invoice.vat_amount == Decimal("210.98")


async def test_invoice_for_a_person_names_the_person_and_the_placeholders_until_configured(demo):
    placed = await place(demo)
    text = shows(build_invoice_pdf(*await demo.get_invoice(placed.invoice.number)))
    assert ("Покупатель (Заказчик): Иванов Алексей Сергеевич, Москва, ул. Садовая-Кудринская, д. 5, кв. 12, "
            "тел.: +79161234567") in text
    assert "ИНН 0000000000" in text and "заполнить: seller.name" in text  # default [seller]: obvious placeholders


def _dtos(total: str, subtotal: str, vat: str, payable: str, rate: str = "22"):
    line = OrderLineView(sku="W", quantity=2, unit_price=Decimal(total) / 2, amount=Decimal(total),
                         unit="бутылка", name="воды 19 л", unit_en="", name_en="")
    invoice = InvoiceView(number="СЧ-2026-5", issued_at=NOW, subtotal=Decimal(subtotal), vat_rate=Decimal(rate),
                          vat_amount=Decimal(vat), total=Decimal(payable))
    order = OrderView(order_id="A-1", customer_id="C", ordered_at=NOW, lines=(line,), total=Decimal(total),
                      source="ivr", invoice=invoice)
    customer = CustomerView(customer_id="C", last_name="Ли", first_name="Ан", patronymic="", language="ru",
                            address="", phones=())
    return invoice, order, customer


@pytest.mark.parametrize(
    ("amounts", "lines"),
    [
        # prices include VAT: the VAT is inside the total
        (("1400.00", "1147.54", "252.46", "1400.00"),
         [("Итого:", "1 400,00"), ("В том числе НДС 22 %:", "252,46"), ("Всего к оплате:", "1 400,00")]),
        # prices without VAT: the VAT comes on top
        (("1400.00", "1400.00", "308.00", "1708.00"),
         [("Итого:", "1 400,00"), ("НДС 22 %:", "308,00"), ("Всего к оплате:", "1 708,00")]),
        # a zero rate
        (("1400.00", "1400.00", "0.00", "1400.00", "0"),
         [("Итого:", "1 400,00"), ("Без налога (НДС):", "—"), ("Всего к оплате:", "1 400,00")]),
        # a fractional rate of old
        (("100.00", "90.50", "9.50", "100.00", "10.5"),
         [("Итого:", "100,00"), ("В том числе НДС 10,5 %:", "9,50"), ("Всего к оплате:", "100,00")]),
    ],
)
def test_totals_lines_with_vat_included_on_top_or_none(amounts, lines):
    invoice, order, customer = _dtos(*amounts)
    assert totals_lines(invoice, order) == lines
    text = shows(build_invoice_pdf(invoice, order, customer))
    assert " ".join(f"{label} {value}" for label, value in lines) in text
    assert amount_in_words(invoice.total) in text


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("0", "Ноль рублей 00 копеек"),
        ("0.01", "Ноль рублей 01 копейка"),
        ("1", "Один рубль 00 копеек"),
        ("2.02", "Два рубля 02 копейки"),
        ("5.05", "Пять рублей 05 копеек"),
        ("11.11", "Одиннадцать рублей 11 копеек"),
        ("21.21", "Двадцать один рубль 21 копейка"),
        ("22.22", "Двадцать два рубля 22 копейки"),
        ("112", "Сто двенадцать рублей 00 копеек"),
        ("1000", "Одна тысяча рублей 00 копеек"),
        ("1170", "Одна тысяча сто семьдесят рублей 00 копеек"),
        ("2001.5", "Две тысячи один рубль 50 копеек"),
        ("5000", "Пять тысяч рублей 00 копеек"),
        ("21000", "Двадцать одна тысяча рублей 00 копеек"),
        ("1000000", "Один миллион рублей 00 копеек"),
        ("2345678.91", "Два миллиона триста сорок пять тысяч шестьсот семьдесят восемь рублей 91 копейка"),
        ("1699.995", "Одна тысяча семьсот рублей 00 копеек"),  # rounded half up, like the invoice
    ],
)
def test_amount_in_words(amount, words):
    assert amount_in_words(Decimal(amount)) == words


def test_money_and_dates_as_printed():
    assert rubles(Decimal("1234567.5")) == "1 234 567,50"
    assert rubles(Decimal("0")) == "0,00"
    assert date_in_words(date(2026, 1, 1)) == "1 января 2026 г."
    assert date_in_words(date(2026, 11, 28)) == "28 ноября 2026 г."
    assert percent(Decimal("22.00")) == "22" and percent(Decimal("10.50")) == "10,5"


async def test_the_invoice_over_http_carries_the_configured_seller(demo, store):
    from tests.console.conftest import add_role_users, make_console_app, start_client

    app = make_console_app(store, seller=SELLER)
    await add_role_users(app)
    client = await start_client(app)
    try:
        placed = await place(demo, customer="C002")
        await login(client, "op1", PASSWORD)
        response = await client.get(invoice_url("C002", placed.invoice.number))
        assert response.status == 200
        text = shows(await response.read())  # compressed, as browsers get it
    finally:
        await client.close()
    assert "ООО «Чистая вода» Получатель" in text and "БИК 044525225" in text
    assert "ООО «Ромашка», ИНН 7705123456, КПП 770501001" in text
    assert f"Счёт на оплату № {placed.invoice.number} от 27 ноября 2026 г." in text


async def test_missing_font_is_a_clear_error(demo, tmp_path: Path):
    placed = await place(demo)
    found = await demo.get_invoice(placed.invoice.number)
    with pytest.raises(InvoiceFontMissing, match="fonts-dejavu-core"):
        build_invoice_pdf(*found, font_dir=tmp_path)


def test_every_place_that_installs_the_service_installs_the_invoice_font():
    """The font is a system package, not a Python one: the Docker image, `make` and CI list it."""
    root = Path(__file__).resolve().parents[2]
    for name in ("Dockerfile", "Makefile", ".ci/run"):
        installs = [line for line in (root / name).read_text(encoding="utf-8").splitlines()
                    if "fonts-dejavu-core" in line]
        assert installs, f"{name} does not install fonts-dejavu-core (the invoice's Cyrillic font)"
