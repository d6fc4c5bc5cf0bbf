"""Cell parsers shared by the importers: each returns a clean value or raises ValueError(reason)."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from crm_bridge.importers.bounds import MAX_QUANTITY, MONEY_MAX, fit_moment
from crm_bridge.models import as_utc
from crm_bridge.money import money
from crm_bridge.phones import normalize_phone

_CURRENCY = re.compile(r"(₽|руб\.?|р\.|rub)", re.IGNORECASE)
_SPACES = re.compile(r"[\s\u00a0\u202f']")
_PHONE_SPLIT = re.compile(r"[;,\n]")
_DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")
_LANGUAGES = {
    "ru": "ru", "rus": "ru", "рус": "ru", "русский": "ru", "ru-ru": "ru",
    "en": "en", "eng": "en", "english": "en", "англ": "en", "английский": "en", "en-us": "en", "en-gb": "en",
}  # fmt: skip
_TRUE = {"1", "да", "д", "yes", "y", "true", "+", "активен", "в продаже"}
_FALSE = {"0", "нет", "н", "no", "n", "false", "-", "снят"}


def text(cell: Any) -> str:
    """Cell as trimmed text; an XLSX number like 1001.0 becomes "1001" (ids typed as numbers)."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def price(cell: Any) -> Decimal:
    """``1 200,50``, ``1200.50``, ``1,200.50``, ``1.200,50``, ``350 ₽`` -> Decimal, ≥ 0."""
    if isinstance(cell, bool):
        raise ValueError(f"unparseable price {cell!r}")
    if isinstance(cell, int | float | Decimal):
        value = Decimal(str(cell))
    else:
        raw = text(cell)
        cleaned = _SPACES.sub("", _CURRENCY.sub("", raw))
        if "," in cleaned and "." in cleaned:
            # The last separator is the decimal one; the other groups thousands.
            if cleaned.rfind(",") > cleaned.rfind("."):
                cleaned = cleaned.replace(".", "").replace(",", ".")
            else:
                cleaned = cleaned.replace(",", "")
        else:
            cleaned = cleaned.replace(",", ".")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise ValueError(f"unparseable price {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"unparseable price {cell!r}")
    # Before rounding: quantizing 1e30 to kopecks overflows Decimal's context (not a ValueError).
    if value > MONEY_MAX:
        raise ValueError(f"price {text(cell)} is too large (at most {MONEY_MAX})")
    return money(value)


def quantity(cell: Any) -> int:
    """A positive whole number (``4``, ``4.0`` from a spreadsheet); anything else is refused."""
    raw = cell
    if isinstance(cell, str):
        cell = _SPACES.sub("", cell).replace(",", ".")
    try:
        number = Decimal(str(cell)) if not isinstance(cell, bool) else Decimal("NaN")
    except InvalidOperation:
        raise ValueError(f"unparseable quantity {text(raw)!r}") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"quantity must be a positive whole number, got {text(raw)!r}")
    if number > MAX_QUANTITY:  # checked first: 1e999999 has no integral value to compare with
        raise ValueError(f"quantity {text(raw)} is too large (at most {MAX_QUANTITY})")
    if number != number.to_integral_value():
        raise ValueError(f"quantity must be a positive whole number, got {text(raw)!r}")
    return int(number)


def moment(cell: Any, zone: ZoneInfo) -> datetime:
    """ISO 8601 or ``27.11.2026[ 10:00[:00]]``; naive values are wall-clock time in ``zone``. -> UTC."""
    if isinstance(cell, datetime):
        parsed = cell
    elif isinstance(cell, date):
        parsed = datetime.combine(cell, time())
    else:
        raw = text(cell)
        parsed = _parse_text_moment(raw)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        moment_utc = as_utc(parsed)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise ValueError(f"date {text(cell)!r} is out of range") from None
    return fit_moment(moment_utc)


def _parse_text_moment(raw: str) -> datetime:
    if not raw:
        raise ValueError("missing date")
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(raw, fmt)
        except ValueError:
            continue
    raise ValueError(f"unparseable date {raw!r} (use 2026-11-27, 2026-11-27T10:00 or 27.11.2026 10:00)")


def phones(cell: Any) -> list[str]:
    """Several numbers separated by ``;``, ``,`` or new lines -> unique E.164 list, in order."""
    out: list[str] = []
    for part in _PHONE_SPLIT.split(text(cell)):
        if not part.strip():
            continue
        number = normalize_phone(part)
        if number is None:
            raise ValueError(f"unparseable phone {part.strip()!r}")
        if number not in out:
            out.append(number)
    return out


def language(cell: Any) -> str:
    value = text(cell).lower()
    if not value:
        return "ru"
    if value not in _LANGUAGES:
        raise ValueError(f"unknown language {value!r} (use ru or en)")
    return _LANGUAGES[value]


def flag(cell: Any) -> bool:
    if isinstance(cell, bool):
        return cell
    value = text(cell).lower()
    if not value:
        return True
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"unparseable yes/no value {value!r}")


def split_full_name(full: str) -> tuple[str, str, str]:
    """Russian order "Фамилия Имя Отчество"; anything past three words stays in the patronymic
    ("Мамедов Рашид Ахмед оглы"); a single word is taken as the first name (that is what we greet)."""
    words = full.split()
    if not words:
        return "", "", ""
    if len(words) == 1:
        return "", words[0], ""
    return words[0], words[1], " ".join(words[2:])
