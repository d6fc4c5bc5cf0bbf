"""A printable invoice (счёт на оплату) as PDF, laid out like the form Russian accounting software
prints (1С's «Счёт на оплату»), with fpdf2:

```
┌──────────────────────────────┬───────┬────────────────────┐
│ bank of the seller           │ БИК   │ 044525225          │
│                              ├───────┤                    │
│                              │ Сч. № │ correspondent acc. │
│ Банк получателя              │       │                    │
├──────────────┬───────────────┼───────┤                    │
│ ИНН …        │ КПП …         │ Сч. № │ settlement account │
├──────────────┴───────────────┤       │                    │
│ seller's name                │       │                    │
│ Получатель                   │       │                    │
└──────────────────────────────┴───────┴────────────────────┘
Счёт на оплату № СЧ-2026-17 от 28 ноября 2026 г.
━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━
Поставщик (Исполнитель):  name, ИНН, КПП, address
Покупатель (Заказчик):    company + ИНН/КПП, or the person; address, phones
Основание:                заказ № A-1001 от 27.11.2026, доставка 28.11.2026
│ № │ Товары (работы, услуги) │ Кол-во │ Ед. │ Цена │ Сумма │
                                          Итого:   1 170,00
                              В том числе НДС 22 %:  211,00
                                 Всего к оплате:   1 170,00
Всего наименований 2, на сумму 1 170,00 руб.
Одна тысяча сто семьдесят рублей 00 копеек
━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━
Руководитель ________ director          Бухгалтер ________ accountant
```

The seller's requisites come from the configuration (``[seller]``, ``ivr.settings.SellerSettings``);
the VAT rate and amount are the invoice's own (chosen by the delivery date when the order was
placed). Whether the prices included VAT is read off the amounts: the order's lines sum to the
invoice total when they did ("В том числе НДС"), to the amount without VAT when they did not
("НДС" on its own line, then "Всего к оплате").

Cyrillic needs a Unicode TrueType font: Debian's DejaVu Sans (package ``fonts-dejavu-core``;
``make``, ``.ci/run`` and the Dockerfile install it). Without it, building raises
:class:`InvoiceFontMissing` with the package to install, and the console answers 503 with that message.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import FontFace

from crm_bridge.dto import CustomerView, InvoiceView, OrderView
from crm_bridge.money import money
from ivr.settings import SellerSettings, default_settings
from prompts.amounts import rubles_and_kopecks
from prompts.russian import MONTHS_GENITIVE, agree_noun, noun_gender, spell_number

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"

# Column widths in mm (the page's usable width is 185 mm: margins 15 left, 10 right).
BANK_COLUMNS = (105.0, 18.0, 62.0)
TABLE_COLUMNS = (9, 86, 18, 12, 29, 31)
LABEL_WIDTH = 32.0  # "Поставщик (Исполнитель):" and the like
TOTAL_WIDTH = 31.0  # the amounts under the table line up with the "Сумма" column


class InvoiceFontMissing(RuntimeError):
    """The Unicode font for Cyrillic is not installed."""


def rubles(amount: Decimal) -> str:
    """Decimal('1170.5') -> '1 170,50' (thousands grouped with a space, comma decimals)."""
    whole, _, cents = f"{money(amount):,.2f}".partition(".")
    return f"{whole.replace(',', ' ')},{cents}"


def amount_in_words(amount: Decimal) -> str:
    """'Одна тысяча сто семьдесят рублей 05 копеек': rubles in words, kopecks in two figures, as on
    Russian payment documents; both nouns agree with their number."""
    whole, kopecks = rubles_and_kopecks(amount)
    text = (f"{spell_number(whole, noun_gender('рубль'))} {agree_noun('рубль', whole)} "
            f"{kopecks:02d} {agree_noun('копейка', kopecks)}")
    return text[:1].upper() + text[1:]


def date_in_words(day: date) -> str:
    """date(2026, 11, 28) -> '28 ноября 2026 г.' (the invoice's title)."""
    return f"{day.day} {MONTHS_GENITIVE[day.month - 1]} {day.year} г."


def percent(rate: Decimal) -> str:
    """Decimal('22.00') -> '22', Decimal('10.50') -> '10,5'."""
    return f"{Decimal(rate).normalize():f}".replace(".", ",")


def totals_lines(invoice: InvoiceView, order: OrderView) -> list[tuple[str, str]]:
    """The (label, amount) lines under the goods table."""
    if invoice.vat_amount == 0:
        return [("Итого:", rubles(invoice.total)), ("Без налога (НДС):", "—"),
                ("Всего к оплате:", rubles(invoice.total))]
    rate = percent(invoice.vat_rate)
    if order.total == invoice.total:  # the prices included VAT
        return [("Итого:", rubles(invoice.total)), (f"В том числе НДС {rate} %:", rubles(invoice.vat_amount)),
                ("Всего к оплате:", rubles(invoice.total))]
    return [("Итого:", rubles(invoice.subtotal)), (f"НДС {rate} %:", rubles(invoice.vat_amount)),
            ("Всего к оплате:", rubles(invoice.total))]


def seller_line(seller: SellerSettings) -> str:
    return ", ".join(p for p in (seller.name, _tagged("ИНН", seller.inn), _tagged("КПП", seller.kpp), seller.address)
                     if p)


def buyer_line(customer: CustomerView) -> str:
    """A company: its name, ИНН, КПП, address. A person: the full name, address and phones."""
    if customer.company:
        parts = [customer.company, _tagged("ИНН", customer.inn), _tagged("КПП", customer.kpp), customer.address]
    else:
        name = " ".join(p for p in (customer.last_name, customer.first_name, customer.patronymic) if p)
        parts = [name or f"клиент {customer.customer_id}", customer.address]
    if customer.phones:
        parts.append(f"тел.: {', '.join(customer.phones)}")
    return ", ".join(p for p in parts if p)


def _tagged(tag: str, value: str) -> str:
    return f"{tag} {value}" if value else ""


def _item_name(unit: str, name: str) -> str:
    text = f"{unit} {name}".strip()
    return text[:1].upper() + text[1:]


def build_invoice_pdf(
    invoice: InvoiceView,
    order: OrderView,
    customer: CustomerView,
    *,
    seller: SellerSettings | None = None,
    timezone: str = "Europe/Moscow",
    compress: bool = True,
    font_dir: Path | None = None,
) -> bytes:
    """The invoice as PDF bytes. ``compress=False`` leaves the page streams readable (tests)."""
    seller = seller or default_settings().seller
    regular = (font_dir / FONT_REGULAR.name) if font_dir else FONT_REGULAR
    bold = (font_dir / FONT_BOLD.name) if font_dir else FONT_BOLD
    if not regular.is_file():
        raise InvoiceFontMissing(
            f"the invoice font {regular} is missing: install the Debian package fonts-dejavu-core"
        )
    zone = ZoneInfo(timezone)
    issued = invoice.issued_at.astimezone(zone).date()

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.set_title(f"Счёт на оплату № {invoice.number}")
    pdf.set_subject(f"Счёт на оплату № {invoice.number} по заказу {order.order_id}")
    pdf.set_creator("ivr")
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold if bold.is_file() else regular))
    pdf.set_margins(15, 10, 10)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw

    _bank_block(pdf, seller)

    # --- title --------------------------------------------------------------------------------------
    pdf.ln(6)
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(width, 7, f"Счёт на оплату № {invoice.number} от {date_in_words(issued)}",
                   new_x="LMARGIN", new_y="NEXT")
    # Corrections (crm_bridge/README.md, "Correcting an order"): a cancelled order's invoice says so;
    # an edited order's invoice was recomputed under the same number.
    if invoice.status == "cancelled":
        pdf.set_text_color(180, 35, 24)
        pdf.multi_cell(width, 7, "АННУЛИРОВАН: заказ отменён, счёт не подлежит оплате", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    elif invoice.revision > 1:
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(width, 5, f"Редакция {invoice.revision}: заказ изменён, счёт пересчитан",
                       new_x="LMARGIN", new_y="NEXT")
    _rule(pdf, 0.6)

    # --- parties and basis --------------------------------------------------------------------------
    basis = f"Заказ № {order.order_id} от {order.ordered_at.astimezone(zone):%d.%m.%Y}"
    if order.delivery_date is not None:
        basis += f", доставка {order.delivery_date:%d.%m.%Y}"
    for label, value in (
        ("Поставщик\n(Исполнитель):", seller_line(seller)),
        ("Покупатель\n(Заказчик):", buyer_line(customer)),
        ("Основание:", basis),
    ):
        _labelled(pdf, label, value)
    pdf.ln(2)

    # --- goods --------------------------------------------------------------------------------------
    pdf.set_font("DejaVu", "", 9)
    with pdf.table(
        col_widths=TABLE_COLUMNS,
        width=width,
        align="LEFT",
        text_align=("CENTER", "LEFT", "RIGHT", "LEFT", "RIGHT", "RIGHT"),
        headings_style=FontFace(emphasis="BOLD"),
        line_height=5,
        borders_layout="ALL",
    ) as table:
        table.row(("№", "Товары (работы, услуги)", "Кол-во", "Ед.", "Цена", "Сумма"))
        for number, line in enumerate(order.lines, start=1):
            table.row((str(number), _item_name(line.unit, line.name), str(line.quantity), "шт",
                       rubles(line.unit_price), rubles(line.amount)))
    pdf.ln(1)

    # --- totals -------------------------------------------------------------------------------------
    pdf.set_font("DejaVu", "B", 10)
    for label, value in totals_lines(invoice, order):
        pdf.cell(width - TOTAL_WIDTH, 5.5, label, align="R")
        pdf.cell(TOTAL_WIDTH, 5.5, value, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(width, 5.5, f"Всего наименований {len(order.lines)}, на сумму {rubles(invoice.total)} руб.",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 10)
    pdf.multi_cell(width, 5.5, amount_in_words(invoice.total), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _rule(pdf, 0.6)

    # --- signatures ---------------------------------------------------------------------------------
    pdf.ln(8)
    half = width / 2
    for x, role, person in ((pdf.l_margin, "Руководитель", seller.director),
                            (pdf.l_margin + half + 5, "Бухгалтер", seller.accountant)):
        _signature(pdf, x, role, person, half - 5)
    return bytes(pdf.output())


def _bank_block(pdf: FPDF, seller: SellerSettings) -> None:
    """The payee's bank details in the boxed grid every Russian invoice starts with."""
    left, mid, right = BANK_COLUMNS
    x0, y0 = pdf.l_margin, pdf.get_y()
    bank_h, inn_h, payee_h = 17.0, 6.0, 17.0
    total_h = bank_h + inn_h + payee_h
    x_mid, x_right = x0 + left, x0 + left + mid
    pdf.set_line_width(0.25)
    pdf.rect(x0, y0, left + mid + right, total_h)
    pdf.line(x_mid, y0, x_mid, y0 + total_h)
    pdf.line(x_right, y0, x_right, y0 + total_h)
    pdf.line(x0, y0 + bank_h, x_mid, y0 + bank_h)  # bank | ИНН-КПП
    pdf.line(x0, y0 + bank_h + inn_h, x_mid, y0 + bank_h + inn_h)  # ИНН-КПП | payee
    pdf.line(x0 + left / 2, y0 + bank_h, x0 + left / 2, y0 + bank_h + inn_h)  # ИНН | КПП
    pdf.line(x_mid, y0 + 6, x_right, y0 + 6)  # БИК | Сч. №
    pdf.line(x_mid, y0 + bank_h, x_right + right, y0 + bank_h)  # correspondent | settlement account

    def text(x: float, y: float, w: float, value: str, size: float = 9, style: str = "") -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.set_xy(x + 1, y + 0.8)
        pdf.multi_cell(w - 2, 4.2, value, align="L")

    text(x0, y0, left, seller.bank)
    text(x0, y0 + bank_h - 5, left, "Банк получателя", size=7.5)
    text(x_mid, y0, mid, "БИК")
    text(x_right, y0, right, seller.bik)
    text(x_mid, y0 + 6, mid, "Сч. №")
    text(x_right, y0 + 6, right, seller.correspondent_account)
    text(x0, y0 + bank_h, left / 2, _tagged("ИНН", seller.inn) or "ИНН")
    text(x0 + left / 2, y0 + bank_h, left / 2, _tagged("КПП", seller.kpp) or "КПП")
    text(x_mid, y0 + bank_h, mid, "Сч. №")
    text(x_right, y0 + bank_h, right, seller.account)
    text(x0, y0 + bank_h + inn_h, left, seller.name)
    text(x0, y0 + total_h - 5, left, "Получатель", size=7.5)
    pdf.set_xy(x0, y0 + total_h)


def _rule(pdf: FPDF, width: float) -> None:
    y = pdf.get_y() + 1
    pdf.set_line_width(width)
    pdf.line(pdf.l_margin, y, pdf.l_margin + pdf.epw, y)
    pdf.set_line_width(0.25)
    pdf.set_y(y + 3)


def _labelled(pdf: FPDF, label: str, value: str) -> None:
    """A label on the left, its (bold, wrapped) value beside it; the next one starts below both."""
    x, y = pdf.l_margin, pdf.get_y()
    pdf.set_font("DejaVu", "", 9)
    pdf.set_xy(x, y)
    pdf.multi_cell(LABEL_WIDTH, 4.5, label, align="L")
    label_bottom = pdf.get_y()
    pdf.set_font("DejaVu", "B", 9.5)
    pdf.set_xy(x + LABEL_WIDTH, y)
    pdf.multi_cell(pdf.epw - LABEL_WIDTH, 4.8, value, align="L")
    pdf.set_xy(x, max(label_bottom, pdf.get_y()) + 2.5)


def _signature(pdf: FPDF, x: float, role: str, person: str, width: float) -> None:
    """'Руководитель ______ Петров П. П.' with the line to sign on."""
    y = pdf.get_y()
    pdf.set_font("DejaVu", "B", 10)
    pdf.set_xy(x, y)
    label_w = pdf.get_string_width(role) + 2
    pdf.cell(label_w, 6, role)
    line_w = 32.0
    pdf.set_line_width(0.25)
    pdf.line(x + label_w, y + 5, x + label_w + line_w, y + 5)
    pdf.set_font("DejaVu", "", 10)
    pdf.set_xy(x + label_w + line_w + 2, y)
    pdf.cell(width - label_w - line_w - 2, 6, person)
    if person:  # the name's own underline, as on the printed form
        pdf.line(x + label_w + line_w + 2, y + 5, x + width, y + 5)
    pdf.set_xy(pdf.l_margin, y)
