"""A table of prompt renderings that the segmented rendering must reproduce character for character.

``golden_texts.json`` holds what the whole-string phrasebook (main at b4925f3, before segments)
rendered for each case; regenerate it only when a wording change is intended:
``python -m tests.prompts.segment_cases > tests/prompts/golden_texts.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from tests.prompts.test_phrasebook import Customer, Line

NOUNS = (
    ("бутылка", "воды «Жемчужная роса» 19 л", "bottle", 'of "Zhemchuzhnaya Rosa" water, 19 litres'),
    ("баллон", "из поликарбоната, 19 л, оборотная тара", "returnable bottle", "polycarbonate, 19 litres"),
    ("упаковка", "одноразовых стаканчиков, по 100 штук", "pack", "of disposable cups, 100 pieces"),
    ("помпа", "для бутылей 19 л", "pump", "for 19-litre bottles"),
    ("ведро", "", None, None),
)
CUSTOMERS = (Customer("Алексей", "Сергеевич", "Иванов"), Customer("Мария", "", "Петрова"),
             Customer("Ёжик", "Ильич", "Х"))
AMOUNTS = ("0", "1", "2", "5", "11", "21", "101", "350", "999", "1000", "1001", "1400", "1920", "2000",
           "5000", "21000", "100000", "999999", "1234567", "1201.01", "0.50", "12.345", "1400.99")
NUMBERS = ("A-1001", "A-0042", "СЧ-17", "B1002", "X-12345678", "2024/0007", "ORDER-5", "0", "a-1", "Z-100")


def cases() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(case id, language, prompt id, params)."""
    for language in ("ru", "en"):
        for unit, name, unit_en, name_en in NOUNS:
            for n in range(1, 101):
                line = Line(n, unit, name, unit_en, name_en)
                yield f"{language}-item-{unit}-{n}", language, "ask_quantity", {"item": line, "max": n}
        for n in (1, 2, 5, 21, 50, 100, 101, 999):
            yield f"{language}-max-{n}", language, "quantity_too_large", {"max": n}
        for i, customer in enumerate(CUSTOMERS):
            lines = [Line(1 + i, *NOUNS[0]), Line(2 + i, *NOUNS[2]), Line(21, *NOUNS[3])][: i + 1]
            yield f"{language}-greeting-{i}", language, "greeting_menu", {"customer": customer, "order": lines}
            yield f"{language}-confirm-{i}", language, "confirm_order", {"order": lines}
        start = date(2026, 1, 1)
        for k, amount in enumerate(AMOUNTS):
            number = NUMBERS[k % len(NUMBERS)]
            today = start + timedelta(days=16 * k)  # 23 amounts x 16 days: every month boundary of a year
            for delta in (0, 1, 2, 3, 6, 7, 12, 17):
                params = {"number": number, "total": Decimal(amount), "delivery_date": today + timedelta(delta),
                          "today": today, "window_start": (9 + k) % 24, "window_end": (14 + k) % 25}
                yield f"{language}-placed-{k}-{delta}", language, "order_placed", params
        for number in NUMBERS:
            params = {"number": number, "total": Decimal("1"), "delivery_date": date(2026, 2, 28),
                      "today": date(2026, 2, 27), "window_start": 0, "window_end": 12}
            yield f"{language}-number-{number}", language, "order_placed", params
        for hour in range(0, 25):
            params = {"open_hour": hour, "close_hour": 24 - hour}
            yield f"{language}-hours-{hour}", language, "after_hours_callback", params


if __name__ == "__main__":
    from prompts.phrasebook import Phrasebook

    golden = {cid: Phrasebook.load(lang).render(pid, **params) for cid, lang, pid, params in cases()}
    print(json.dumps(golden, ensure_ascii=False, indent=0, sort_keys=True))
