"""A printable invoice (счёт на оплату) as PDF, in Russian, with fpdf2.

Cyrillic needs a Unicode TrueType font: Debian's DejaVu Sans (package ``fonts-dejavu-core``;
``make`` and ``.ci/run`` install it). Without it, building raises :class:`InvoiceFontMissing`
with the package to install, and the console answers 503 with that message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import FontFace

from crm_bridge.dto import CustomerView, InvoiceView, OrderView
from prompts.russian import money_phrase

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"


@dataclass(frozen=True)
class Seller:
    name: str
    inn: str
    kpp: str
    address: str
    bank: str
    bik: str
    account: str
    correspondent_account: str


# ============================== CONFIGURATION: FILL IN BEFORE PRODUCTION ==============================
# The seller's requisites printed on every invoice. These are PLACEHOLDERS: replace them with the
# company's real name, INN/KPP, address and bank details (they are deliberately obviously fake).
SELLER = Seller(
    name="ООО «НАЗВАНИЕ КОМПАНИИ» (заполнить в ivr/web/console/invoice_pdf.py)",
    inn="0000000000",
    kpp="000000000",
    address="г. Москва, АДРЕС КОМПАНИИ (заполнить)",
    bank="НАЗВАНИЕ БАНКА (заполнить)",
    bik="000000000",
    account="00000000000000000000",
    correspondent_account="00000000000000000000",
)
# =====================================================================================================


class InvoiceFontMissing(RuntimeError):
    """The Unicode font for Cyrillic is not installed."""


def rubles(amount: Decimal) -> str:
    """Decimal('1170.5') -> '1 170,50' (thin grouping with a space, comma decimals)."""
    whole, _, cents = f"{Decimal(amount).quantize(Decimal('0.01')):,.2f}".partition(".")
    return f"{whole.replace(',', ' ')},{cents}"


def amount_in_words(amount: Decimal) -> str:
    """'Одна тысяча сто семьдесят рублей 00 копеек' (kopecks always shown, in figures when zero)."""
    phrase = money_phrase(amount)
    if Decimal(amount).quantize(Decimal("0.01")) == Decimal(amount).quantize(Decimal("1")):
        phrase += " 00 копеек"
    return phrase[:1].upper() + phrase[1:]


def _vat_rate(rate: Decimal) -> str:
    text = f"{Decimal(rate).normalize():f}"
    return text.replace(".", ",")


def _item_name(unit: str, name: str) -> str:
    text = f"{unit} {name}".strip()
    return text[:1].upper() + text[1:]


def build_invoice_pdf(
    invoice: InvoiceView,
    order: OrderView,
    customer: CustomerView,
    *,
    seller: Seller = SELLER,
    timezone: str = "Europe/Moscow",
    compress: bool = True,
    font_dir: Path | None = None,
) -> bytes:
    """The invoice as PDF bytes. ``compress=False`` leaves the page streams readable (tests)."""
    regular = (font_dir / FONT_REGULAR.name) if font_dir else FONT_REGULAR
    bold = (font_dir / FONT_BOLD.name) if font_dir else FONT_BOLD
    if not regular.is_file():
        raise InvoiceFontMissing(
            f"the invoice font {regular} is missing: install the Debian package fonts-dejavu-core"
        )
    issued: datetime = invoice.issued_at.astimezone(ZoneInfo(timezone))

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.set_title(f"Счёт № {invoice.number}")
    pdf.set_subject(f"Счёт № {invoice.number} по заказу {order.order_id}")
    pdf.set_creator("ivr")
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold if bold.is_file() else regular))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw

    # --- seller -------------------------------------------------------------------------------------
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(width, 6, seller.name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    for line in (
        f"ИНН {seller.inn}, КПП {seller.kpp}",
        f"Адрес: {seller.address}",
        f"Банк: {seller.bank}, БИК {seller.bik}",
        f"Р/с {seller.account}, к/с {seller.correspondent_account}",
    ):
        pdf.multi_cell(width, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)

    # --- title and buyer ----------------------------------------------------------------------------
    pdf.set_font("DejaVu", "B", 15)
    pdf.multi_cell(width, 8, f"Счёт на оплату № {invoice.number} от {issued:%d.%m.%Y}",
                   new_x="LMARGIN", new_y="NEXT")
    # Corrections (crm_bridge/README.md, "Correcting an order"): a cancelled order's invoice says so;
    # an edited order's invoice was recomputed under the same number.
    if invoice.status == "cancelled":
        pdf.set_text_color(180, 35, 24)
        pdf.multi_cell(width, 8, "АННУЛИРОВАН: заказ отменён, счёт не подлежит оплате", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    elif invoice.revision > 1:
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(width, 5, f"Редакция {invoice.revision}: заказ изменён, счёт пересчитан",
                       new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 10)
    buyer = " ".join(p for p in (customer.last_name, customer.first_name, customer.patronymic) if p)
    buyer_lines = [f"Покупатель: {buyer} (клиент {customer.customer_id})"]
    if customer.address:
        buyer_lines.append(f"Адрес доставки: {customer.address}")
    if customer.phones:
        buyer_lines.append(f"Телефон: {', '.join(customer.phones)}")
    basis = f"Основание: заказ № {order.order_id} от {order.ordered_at.astimezone(ZoneInfo(timezone)):%d.%m.%Y}"
    if order.delivery_date is not None:
        basis += f", доставка {order.delivery_date:%d.%m.%Y}"
    buyer_lines.append(basis)
    for line in buyer_lines:
        pdf.multi_cell(width, 5.5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    # --- lines --------------------------------------------------------------------------------------
    pdf.set_font("DejaVu", "", 9)
    head = FontFace(emphasis="BOLD", fill_color=(235, 238, 242))
    with pdf.table(
        col_widths=(8, 82, 16, 12, 26, 28),
        text_align=("CENTER", "LEFT", "RIGHT", "CENTER", "RIGHT", "RIGHT"),
        headings_style=head,
        line_height=5.5,
    ) as table:
        table.row(("№", "Наименование", "Кол-во", "Ед.", "Цена, руб.", "Сумма, руб."))
        for number, line in enumerate(order.lines, start=1):
            table.row((str(number), _item_name(line.unit, line.name), str(line.quantity), "шт.",
                       rubles(line.unit_price), rubles(line.amount)))
    pdf.ln(3)

    # --- totals -------------------------------------------------------------------------------------
    pdf.set_font("DejaVu", "", 10)
    totals = [
        ("Итого без НДС:", rubles(invoice.subtotal)),
        (f"НДС {_vat_rate(invoice.vat_rate)} %:", rubles(invoice.vat_amount)),
    ]
    for label, value in totals:
        pdf.cell(width - 35, 6, label, align="R")
        pdf.cell(35, 6, value, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(width - 35, 7, "Всего к оплате:", align="R")
    pdf.cell(35, 7, rubles(invoice.total), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(width, 5.5, f"Всего наименований {len(order.lines)}, на сумму {rubles(invoice.total)} руб.",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 10)
    pdf.multi_cell(width, 5.5, amount_in_words(invoice.total), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(12)

    # --- signatures ---------------------------------------------------------------------------------
    pdf.set_font("DejaVu", "", 10)
    pdf.cell(width / 2, 6, "Руководитель ____________________")
    pdf.cell(width / 2, 6, "Бухгалтер ____________________", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
