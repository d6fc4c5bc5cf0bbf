"""Every unit the segment library should hold before the first call (``ivr prompts build``).

Built from the same functions the phrasebook says things with, so a unit listed here is exactly a
unit a prompt asks for. What is not listed (a customer's name, a product added later, a number
beyond a million) is synthesized on first use and cached, once.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from prompts import english, russian
from prompts.phrasebook import PROMPT_PARAMS, Phrasebook, static_prompt_ids


@dataclass(frozen=True)
class _Customer:
    first_name: str = "Имя"
    patronymic: str = ""
    last_name: str = ""


@dataclass(frozen=True)
class _Line:
    quantity: int = 1
    unit: str = "бутылка"
    name: str = ""
    unit_en: str | None = "bottle"
    name_en: str | None = None


_SAMPLE = {
    "customer": _Customer(), "order": [_Line()], "item": _Line(), "max": 1, "number": "1",
    "total": Decimal(1), "delivery_date": date(2026, 1, 2), "today": date(2026, 1, 1),
    "window_start": 1, "window_end": 1, "open_hour": 1, "close_hour": 1,
}
_CYRILLIC = "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯ"


def template_literals(language: str) -> set[str]:
    """The words of every catalogue template between its fields (static prompts are whole files)."""
    book = Phrasebook.load(language)
    units: set[str] = set()
    for prompt_id, names in PROMPT_PARAMS.items():
        if prompt_id in static_prompt_ids():
            continue
        for segment in book.segments(prompt_id, **{n: _SAMPLE[n] for n in names}):
            if segment.kind == "literal":
                units.update(segment.say)
    return units


def vocabulary(language: str, products: Iterable[Any] = (), max_quantity: int = 50) -> set[str]:
    """Units for numbers 0..999 (and the thousands), amounts, dates, hours, order-number letters,
    template literals and ``products`` (anything with unit/name/unit_en/name_en) in every quantity
    up to ``max_quantity``."""
    units = template_literals(language)
    products = list(products)
    if language == "ru":
        for n in range(1000):
            for gender in ("m", "f", "n"):
                units.update(russian.number_units(n, gender))
            units.update(russian.number_units(n, "m", "gent"))
        for k in (1, 2, 5, 21):
            units.update(russian.number_units(k * 1000, "m"))
            units.add(russian.agree_noun("рубль", k))
            units.add(russian.agree_noun("копейка", k))
        units.update(russian.ordinal_genitive(d) for d in range(1, 32))
        units.update(russian.MONTHS_GENITIVE)
        units.update(("сегодня", "завтра", "послезавтра", *russian.WEEKDAYS_ACCUSATIVE))
        units.update(_CYRILLIC)
        for line in products:
            for q in range(1, max_quantity + 1):
                _, counted, name = russian.quantity_parts(q, line.unit, line.name)
                units.update(u for u in (counted, name) if u)
    else:
        for n in (*range(1000), 1000, 1000000):
            units.update(english.number_units(n))
        units.update(english.ordinal(d) for d in range(1, 32))
        units.update(english.MONTHS)
        units.update(("today", "tomorrow", "the day after tomorrow", "on", "and"))
        units.update(f"on {weekday}" for weekday in english.WEEKDAYS)
        units.update(english.hour_parts(h)[1] for h in range(25))
        units.update(("rouble", "roubles", "kopeck", "kopecks"))
        for line in [*products, _Line(unit_en=None)]:
            for q in (1, 2):
                units.update(u for u in english.quantity_parts(q, line.unit_en or "item", line.name_en) if u)
    units.update(string.ascii_uppercase)
    return {" ".join(u.split()) for u in units if u.strip()}
