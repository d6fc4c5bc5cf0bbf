"""Segmented rendering: the same sentence as before, cut into units a voice can reuse."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from prompts import english, russian
from prompts.phrasebook import Phrasebook, PromptParamsError, Segment
from tests.prompts.segment_cases import CUSTOMERS, NOUNS, Line, cases

GOLDEN = json.loads((Path(__file__).parent / "golden_texts.json").read_text(encoding="utf-8"))
CASES = list(cases())


def test_the_table_covers_every_golden_case():
    assert {case_id for case_id, *_ in CASES} == set(GOLDEN)
    assert len(CASES) > 1000


@pytest.mark.parametrize(("case_id", "language", "prompt_id", "params"), CASES, ids=[c[0] for c in CASES])
def test_segments_join_to_the_text_rendered_before(case_id, language, prompt_id, params):
    segments = Phrasebook.load(language).segments(prompt_id, **params)
    assert "".join(s.text for s in segments) == GOLDEN[case_id]
    for segment in segments:
        if segment.is_gap:  # pauses carry no words
            assert not any(c.isalnum() for c in segment.text) and segment.say == ()
        else:
            assert segment.say and all(unit and unit == unit.strip() for unit in segment.say)
            assert segment.text == segment.text.strip()


def test_order_placed_units_russian():
    segments = Phrasebook.load("ru").segments(
        "order_placed", number="A-0042", total=Decimal("1920.50"), delivery_date=date(2026, 12, 1),
        today=date(2026, 11, 30), window_start=9, window_end=14,
    )
    units = [unit for s in segments for unit in s.say]
    assert units == [
        "Заказ номер", "А", "ноль", "ноль", "сорок два", "оформлен. Сумма", "одна", "тысяча", "девятьсот",
        "двадцать", "рублей", "пятьдесят", "копеек", "Доставка", "завтра", "первого", "декабря", "с",
        "девяти", "до", "четырнадцати", "часов. Спасибо, до свидания",
    ]
    assert [s.text for s in segments if s.is_gap][:3] == [" ", " ", " "]


def test_order_placed_units_english():
    segments = Phrasebook.load("en").segments(
        "order_placed", number="A-1002", total=Decimal("1920"), delivery_date=date(2026, 11, 28),
        today=date(2026, 11, 27), window_start=9, window_end=14,
    )
    units = [unit for s in segments for unit in s.say]
    assert units[:4] == ["Order number", "A", "one", "thousand"]
    assert "in the morning" in units and "November" in units and "twenty-eighth" in units
    assert Segment("-", (), "gap") in segments


def test_the_customer_name_is_one_unit_and_a_value():
    segments = Phrasebook.load("ru").segments("greeting_menu", customer=CUSTOMERS[0], order=[Line(4, *NOUNS[0])])
    names = [s for s in segments if s.text == "Алексей Сергеевич"]
    assert names == [Segment("Алексей Сергеевич", ("Алексей Сергеевич",), "value")]
    assert segments[0] == Segment("Здравствуйте", ("Здравствуйте",), "literal")


def test_a_capitalized_number_keeps_its_units():
    segments = Phrasebook.load("ru").segments("ask_quantity", item=Line(21, *NOUNS[0]), max=50)
    assert segments[0] == Segment("Двадцать одна", ("двадцать одна",), "number")


@pytest.mark.parametrize("n", [*range(0, 2000), 21000, 100000, 999999, 1234567])
def test_number_units_say_the_whole_number(n):
    for gender in ("m", "f", "n"):
        for case in ("nomn", "gent") if n < 100000 else ("nomn",):  # spell_number has no genitive "тысяч"
            assert " ".join(russian.number_units(n, gender, case)) == russian.spell_number(n, gender, case)
    assert " ".join(english.number_units(n)) == english.spell_number(n)


def test_number_units_reuse_a_small_vocabulary():
    ru = {u for n in range(0, 1000) for u in russian.number_units(n)}
    en = {u for n in range(0, 1000) for u in english.number_units(n)}
    assert len(ru) == 109 and len(en) == 109  # 0..99 plus nine hundreds


def test_a_bad_parameter_still_raises():
    with pytest.raises(PromptParamsError):
        Phrasebook.load("ru").segments("quantity_too_large", max=-1)
    with pytest.raises(PromptParamsError):
        Phrasebook.load("en").segments("order_placed", number="", total=Decimal(1), delivery_date=date.today(),
                                       today=date.today(), window_start=9, window_end=14)
