"""Russian agreement: numeral gender and noun form, checked against pymorphy3 and by hand."""

from datetime import date
from decimal import Decimal

import pytest
from num2words import num2words

from prompts import russian

NOUNS = {"бутылка": "f", "баллон": "m", "упаковка": "f", "ведро": "n"}


def _morph_agree(noun: str, n: int) -> str:
    parse = next(
        p for p in russian.morph().parse(noun) if p.tag.POS == "NOUN" and "nomn" in p.tag and "Sgtm" not in p.tag
    )
    return parse.make_agree_with_number(n).word


@pytest.mark.parametrize("noun", NOUNS)
@pytest.mark.parametrize("n", range(1, 101))
def test_numeral_gender_and_noun_form_agree(noun, n):
    gender = NOUNS[noun]
    phrase = russian.quantity_phrase(n, noun)
    expected = f"{num2words(n, lang='ru', gender=gender)} {_morph_agree(noun, n)}"
    assert phrase == expected
    numeral_words = phrase.split()[:-1]
    last = numeral_words[-1]
    # The last numeral word of 1 and 2 carries the gender: одна/один/одно, две/два.
    if n % 10 == 1 and n % 100 != 11:
        assert last == {"f": "одна", "m": "один", "n": "одно"}[gender]
    if n % 10 == 2 and n % 100 != 12:
        assert last == {"f": "две", "m": "два", "n": "два"}[gender]


@pytest.mark.parametrize(
    ("n", "unit", "expected"),
    [
        (1, "бутылка", "одна бутылка"),
        (2, "бутылка", "две бутылки"),
        (5, "бутылка", "пять бутылок"),
        (11, "бутылка", "одиннадцать бутылок"),
        (21, "бутылка", "двадцать одна бутылка"),
        (22, "бутылка", "двадцать две бутылки"),
        (21, "баллон", "двадцать один баллон"),
        (2, "баллон", "два баллона"),
        (2, "ведро", "два ведра"),
        (5, "ведро", "пять вёдер"),
        (1, "ведро", "одно ведро"),
        (100, "бутылка", "сто бутылок"),
        (101, "бутылка", "сто одна бутылка"),
        (1, "упаковка", "одна упаковка"),
        (1000, "бутылка", "одна тысяча бутылок"),
        (2002, "бутылка", "две тысячи две бутылки"),
        (9999, "баллон", "девять тысяч девятьсот девяносто девять баллонов"),
    ],
)
def test_quantity_phrase_spot_checks(n, unit, expected):
    assert russian.quantity_phrase(n, unit) == expected


def test_multi_word_unit_agrees_its_first_noun():
    assert russian.quantity_phrase(2, "упаковка стаканчиков") == "две упаковки стаканчиков"
    assert russian.quantity_phrase(5, "упаковка стаканчиков") == "пять упаковок стаканчиков"


def test_name_follows_and_litre_abbreviation_is_said_in_full():
    assert (
        russian.quantity_phrase(4, "бутылка", "воды «Жемчужная роса» 19 л")
        == "четыре бутылки воды «Жемчужная роса» 19 литров"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("воды 19 л", "воды 19 литров"),
        ("воды 1 л", "воды 1 литр"),
        ("воды 5л", "воды 5 литров"),
        ("воды 1,5 л", "воды 1,5 литра"),
        ("сока 2 л.", "сока 2 литра"),
        ("сиропа 330 мл", "сиропа 330 миллилитров"),
        ("лимонада «Лесной»", "лимонада «Лесной»"),  # an л inside a word is not an abbreviation
    ],
)
def test_expand_abbreviations(text, expected):
    assert russian.expand_abbreviations(text) == expected


def test_quantity_below_one_is_rejected():
    with pytest.raises(ValueError):
        russian.quantity_phrase(0, "бутылка")


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1920", "одна тысяча девятьсот двадцать рублей"),
        ("1200.50", "одна тысяча двести рублей пятьдесят копеек"),
        ("1", "один рубль"),
        ("2", "два рубля"),
        ("5", "пять рублей"),
        ("21.01", "двадцать один рубль одна копейка"),
        ("3.02", "три рубля две копейки"),
        ("0.05", "ноль рублей пять копеек"),
        ("100.00", "сто рублей"),
    ],
)
def test_money_phrase(amount, expected):
    assert russian.money_phrase(Decimal(amount)) == expected


def test_spell_number_gender_and_case():
    assert russian.spell_number(21, "f") == "двадцать одна"
    assert russian.spell_number(2, "n") == "два"
    assert russian.spell_number(50, "m", "gent") == "пятидесяти"
    assert russian.spell_number(14, "m", "gent") == "четырнадцати"
    assert russian.spell_number(121, "m", "gent") == "ста двадцати одного"


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 28), "двадцать восьмого ноября"),
        (date(2026, 1, 1), "первого января"),
        (date(2026, 3, 23), "двадцать третьего марта"),
        (date(2026, 5, 30), "тридцатого мая"),
    ],
)
def test_date_phrase_is_genitive_ordinal(day, expected):
    assert russian.date_phrase(day) == expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 28), "завтра, двадцать восьмого ноября"),
        (date(2026, 11, 29), "послезавтра, двадцать девятого ноября"),
        (date(2026, 11, 30), "в понедельник, тридцатого ноября"),
        (date(2026, 12, 1), "во вторник, первого декабря"),
        (date(2026, 12, 2), "в среду, второго декабря"),
        (date(2026, 12, 10), "десятого декабря"),
    ],
)
def test_delivery_day_is_relative_for_the_next_days(day, expected):
    assert russian.delivery_day_phrase(day, today=date(2026, 11, 27)) == expected


def test_join_list():
    assert russian.join_list(["а"]) == "а"
    assert russian.join_list(["а", "б"]) == "а и б"
    assert russian.join_list(["а", "б", "в"]) == "а, б и в"
