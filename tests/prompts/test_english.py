from datetime import date
from decimal import Decimal

import pytest

from prompts import english


@pytest.mark.parametrize(
    ("unit", "plural"),
    [
        ("bottle", "bottles"),
        ("box", "boxes"),
        ("pack of cups", "packs of cups"),
        ("19-litre bottle", "19-litre bottles"),
        ("battery", "batteries"),
        ("bus", "buses"),
        ("pump", "pumps"),
    ],
)
def test_pluralize(unit, plural):
    assert english.pluralize(unit) == plural


def test_quantity_phrase():
    assert english.quantity_phrase(1, "pump", None) == "one pump"
    assert english.quantity_phrase(21, "box", None) == "twenty-one boxes"
    assert english.quantity_phrase(4, "19-litre bottle", "Pearl Dew water") == (
        "four 19-litre bottles of Pearl Dew water"
    )
    assert english.quantity_phrase(2, "bottle", "of Pearl Dew water") == "two bottles of Pearl Dew water"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1920", "one thousand nine hundred twenty roubles"),
        ("1", "one rouble"),
        ("2.01", "two roubles and one kopeck"),
        ("0.50", "zero roubles and fifty kopecks"),
    ],
)
def test_money_phrase(amount, expected):
    assert english.money_phrase(Decimal(amount)) == expected


def test_dates_and_hours():
    today = date(2026, 11, 27)
    assert english.delivery_day_phrase(date(2026, 11, 28), today) == "tomorrow, November twenty-eighth"
    assert english.delivery_day_phrase(date(2026, 11, 29), today) == (
        "the day after tomorrow, November twenty-ninth"
    )
    assert english.delivery_day_phrase(date(2026, 12, 2), today) == "on Wednesday, December second"
    assert english.hour_phrase(9) == "nine in the morning"
    assert english.hour_phrase(14) == "two in the afternoon"
    assert english.hour_phrase(19) == "seven in the evening"
    assert english.hour_phrase(12) == "noon"


def test_transliterate_names():
    assert english.transliterate("Алексей") == "Alexey"
    assert english.transliterate("Ольга") == "Olga"
    assert english.transliterate("Alice") == "Alice"


def test_join_list():
    assert english.join_list(["a", "b", "c"]) == "a, b and c"
