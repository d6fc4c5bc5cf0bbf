"""/customers search, the customer card and the printable invoice PDF, over real HTTP with sign-ins."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest

from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from crm_bridge.models import Customer, Phone
from ivr.web.console.formats import date_text
from ivr.web.console.invoice_pdf import InvoiceFontMissing, amount_in_words, build_invoice_pdf, rubles
from tests.console.conftest import PASSWORD, login

ROLES = ["op1", "sup1", "adm1"]
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # Friday 11:00 Moscow
XSS = "<script>alert(1)</script>"


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


def _unescape(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    simple = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
    while i < len(raw):
        c = raw[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:
            digits = re.match(rb"[0-7]{1,3}", raw[i + 1:i + 4]).group()
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


def pdf_texts(pdf: bytes) -> list[str]:
    """The page text decoded with each ToUnicode CMap (an uncompressed fpdf2 PDF: 2-byte glyph codes)."""
    cmaps = []
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", pdf, re.S):
        pairs = re.findall(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]+)>", block)
        cmaps.append({int(a, 16): bytes.fromhex(b.decode()).decode("utf-16-be") for a, b in pairs})
    strings = [_unescape(s) for s in re.findall(rb"\(((?:[^\\()]|\\.)*)\)\s*Tj", pdf, re.S)]
    texts = []
    for cmap in cmaps:
        decoded = []
        for s in strings:
            codes = [int.from_bytes(s[i:i + 2], "big") for i in range(0, len(s) - 1, 2)]
            decoded.append("".join(cmap.get(code, "\ufffd") for code in codes))
        texts.append("\n".join(decoded))
    return texts


async def test_invoice_pdf_contains_number_buyer_lines_totals_and_words(demo):
    placed = await place(demo)
    invoice, order, customer = await demo.get_invoice(placed.invoice.number)
    pdf = build_invoice_pdf(invoice, order, customer, compress=False)
    assert pdf.startswith(b"%PDF")
    texts = pdf_texts(pdf)

    def shown(needle: str) -> bool:
        return any(needle in text for text in texts)

    assert shown(f"Счёт на оплату № {invoice.number} от 27.11.2026")
    assert shown("Иванов Алексей Сергеевич")
    assert shown("Москва, ул. Садовая-Кудринская, д. 5, кв. 12")
    assert shown("Бутылка воды «Жемчужная роса» 19 л")
    assert shown("Упаковка одноразовых стаканчиков, по 100 штук")
    assert shown("1 050,00")  # 3 × 350
    assert invoice.total == Decimal("1170.00")
    assert shown("1 170,00")
    assert shown(rubles(invoice.subtotal)) and shown(rubles(invoice.vat_amount))
    assert shown("НДС 20 %:")
    assert shown("Одна тысяча сто семьдесят рублей 00 копеек")
    assert shown("ИНН 0000000000")  # the seller placeholders until configured
    assert shown(f"Основание: заказ № {order.order_id}")


def test_amount_in_words():
    assert amount_in_words(Decimal("1170")) == "Одна тысяча сто семьдесят рублей 00 копеек"
    assert amount_in_words(Decimal("21.01")) == "Двадцать один рубль одна копейка"
    assert rubles(Decimal("1234567.5")) == "1 234 567,50"


async def test_missing_font_is_a_clear_error(demo, tmp_path: Path):
    placed = await place(demo)
    found = await demo.get_invoice(placed.invoice.number)
    with pytest.raises(InvoiceFontMissing, match="fonts-dejavu-core"):
        build_invoice_pdf(*found, font_dir=tmp_path)
