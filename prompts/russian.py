"""Russian number agreement for spoken prompts, done by pymorphy3 and num2words.

Nothing here is a hand-written declension table: the counted noun is agreed with
``MorphAnalyzer.make_agree_with_number`` and numerals come from ``num2words(lang="ru")`` in the
noun's gender, then (when a case other than the nominative is needed) each numeral word is
inflected by pymorphy3. The only literal data are month and weekday names.

Dates are spoken in words ("двадцать восьмого ноября"), not digits: espeak-ng reads "28 ноября"
as "двадцать восемь ноября" and "с 9 до 14 часов" as "с девять до четырнадцать часов" (checked
with ``espeak-ng -v ru -x``), which is wrong; the words are read correctly by every engine.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from decimal import Decimal
from typing import Literal

import pymorphy3
from num2words import num2words

from prompts.amounts import rubles_and_kopecks

Gender = Literal["m", "f", "n"]

_PYMORPHY_GENDER: dict[str, Gender] = {"masc": "m", "femn": "f", "neut": "n"}

MONTHS_GENITIVE = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)
# ISO weekday 1..7, accusative with its preposition, as in "доставка в понедельник".
WEEKDAYS_ACCUSATIVE = (
    "в понедельник", "во вторник", "в среду", "в четверг", "в пятницу", "в субботу", "в воскресенье",
)
# Abbreviated measure words that appear in product names ("воды 19 л"): said in full.
_ABBREVIATIONS = {"л": "литр", "мл": "миллилитр", "кг": "килограмм", "г": "грамм"}
_ABBREVIATION_RE = re.compile(
    r"(?P<num>\d+(?:[.,]\d+)?)\s*(?P<abbr>" + "|".join(sorted(_ABBREVIATIONS, key=len, reverse=True))
    + r")\.?(?![\w])"
)


# Every read-back asks the same few questions of pymorphy3 and num2words (a unit agreed with a
# number, a number in words): answered once, they cost nothing on the next call (measured: the
# phrase rendering of a read-back went from ~1 ms to ~0.1 ms of CPU). Pure functions of their
# arguments, so memoizing cannot change what is said.
_MEMO = 8192


@functools.cache
def morph() -> pymorphy3.MorphAnalyzer:
    """One analyzer per process: loading the dictionaries takes a noticeable fraction of a second."""
    return pymorphy3.MorphAnalyzer(lang="ru")


@functools.lru_cache(maxsize=_MEMO)
def _noun_parse(word: str) -> pymorphy3.analyzer.Parse:
    """The nominative singular noun reading of ``word`` (a unit as stored in the catalogue)."""
    parses = [p for p in morph().parse(word.lower()) if p.tag.POS == "NOUN"]
    if not parses:
        raise ValueError(f"not a Russian noun: {word!r}")
    best = [p for p in parses if {"nomn", "sing"} in p.tag and "Sgtm" not in p.tag]
    return (best or parses)[0]


@functools.lru_cache(maxsize=_MEMO)
def _is_noun(word: str) -> bool:
    return any(p.tag.POS == "NOUN" for p in morph().parse(word.lower()))


def _match_case(template: str, word: str) -> str:
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


@functools.lru_cache(maxsize=_MEMO)
def noun_gender(word: str) -> Gender:
    gender = _noun_parse(word).tag.gender
    if gender not in _PYMORPHY_GENDER:
        raise ValueError(f"no grammatical gender for {word!r}")
    return _PYMORPHY_GENDER[gender]


@functools.lru_cache(maxsize=_MEMO)
def agree_noun(word: str, n: int | Decimal) -> str:
    """``word`` (nominative singular) in the form that follows the numeral ``n`` in the nominative."""
    parse = _noun_parse(word)
    if isinstance(n, Decimal) and n != n.to_integral_value():
        # Fractions govern the genitive singular: "полтора литра", "0,5 литра".
        agreed = parse.inflect({"gent", "sing"})
    else:
        agreed = parse.make_agree_with_number(int(n))
    if agreed is None:
        raise ValueError(f"pymorphy3 cannot agree {word!r} with {n}")
    return _match_case(word, agreed.word)


@functools.lru_cache(maxsize=_MEMO)
def spell_number(n: int, gender: Gender = "m", case: str = "nomn") -> str:
    """Cardinal ``n`` in words in ``gender``: spell_number(21, "f") == "двадцать одна".

    ``case`` is a pymorphy3 case tag ("nomn", "gent", …); "не больше пятидесяти" needs "gent".
    """
    if n < 0:
        raise ValueError("negative numbers are not spoken in prompts")
    words = num2words(int(n), lang="ru", gender=gender)
    if case == "nomn":
        return words
    return " ".join(_inflect_numeral_word(word, case) for word in words.split())


_SCALE_PREFIXES = ("тысяч", "миллион", "миллиард", "триллион")
_CASES = ("nomn", "gent", "datv", "accs", "ablt", "loct")


@functools.cache
def _hundreds_words() -> frozenset[str]:
    return frozenset(spell_number(h * 100, "m", case) for h in range(1, 10) for case in _CASES)


def number_units(n: int, gender: Gender = "m", case: str = "nomn") -> list[str]:
    """:func:`spell_number` cut where a recording can be reused: a hundreds word, a scale word
    ("тысяча") and the tens-and-ones pair are each one unit, so 0..99 in each gender and case, nine
    hundreds and the scale words say every number (1920 -> одна | тысяча | девятьсот | двадцать).
    """
    return list(_number_units(n, gender, case))


@functools.lru_cache(maxsize=_MEMO)
def _number_units(n: int, gender: Gender, case: str) -> tuple[str, ...]:
    units: list[str] = []
    run: list[str] = []
    for word in spell_number(n, gender, case).split():
        if word in _hundreds_words() or word.startswith(_SCALE_PREFIXES):
            if run:
                units.append(" ".join(run))
                run = []
            units.append(word)
        else:
            run.append(word)
    if run:
        units.append(" ".join(run))
    return tuple(units)


def _inflect_numeral_word(word: str, case: str) -> str:
    # Numeral readings first ("сто" is also read as a noun, which would not decline as "ста").
    for pos in (("NUMR", "ADJF"), ("NOUN",)):
        for parse in morph().parse(word):
            if parse.tag.POS in pos and "nomn" in parse.tag:
                inflected = parse.inflect({case})
                if inflected is not None:
                    return inflected.word
    raise ValueError(f"pymorphy3 cannot put numeral word {word!r} in case {case}")


@functools.lru_cache(maxsize=_MEMO)
def ordinal_genitive(n: int) -> str:
    """Masculine genitive ordinal, as said for a day of the month: 28 -> "двадцать восьмого"."""
    words = num2words(int(n), lang="ru", to="ordinal").split()
    for parse in morph().parse(words[-1]):
        if parse.tag.POS == "ADJF" and {"masc", "nomn"} in parse.tag:
            inflected = parse.inflect({"gent", "sing", "masc"})
            if inflected is not None:
                words[-1] = inflected.word
                return " ".join(words)
    raise ValueError(f"cannot inflect ordinal {n}")


@functools.lru_cache(maxsize=_MEMO)
def expand_abbreviations(text: str) -> str:
    """'воды «Жемчужная роса» 19 л' -> 'воды «Жемчужная роса» 19 литров' (agreed with the number)."""

    def replace(match: re.Match[str]) -> str:
        raw = match.group("num")
        amount = Decimal(raw.replace(",", "."))
        noun = agree_noun(_ABBREVIATIONS[match.group("abbr")], amount)
        return f"{raw} {noun}"

    return _ABBREVIATION_RE.sub(replace, text)


@functools.lru_cache(maxsize=_MEMO)
def quantity_parts(n: int, unit: str, name: str = "") -> tuple[Gender, str, str]:
    """The pieces of :func:`quantity_phrase`: (the numeral's gender, the agreed unit, the spoken name).

    ``unit`` may be several words ("упаковка стаканчиков"): the first noun is agreed, the rest is
    kept as written. Abbreviations in ``name`` ("19 л") are said in full.
    """
    if n < 1:
        raise ValueError(f"quantity must be at least 1, got {n}")
    words = unit.split()
    if not words:
        raise ValueError("empty unit")
    head = next((i for i, w in enumerate(words) if _is_noun(w)), 0)
    gender = noun_gender(words[head])
    words[head] = agree_noun(words[head], n)
    return gender, " ".join(words), expand_abbreviations(name.strip()) if name.strip() else ""


def quantity_phrase(n: int, unit: str, name: str = "") -> str:
    """'двадцать один баллон воды …': the numeral in the unit's gender, the unit agreed with it."""
    gender, counted, spoken_name = quantity_parts(n, unit, name)
    return " ".join(p for p in (spell_number(n, gender), counted, spoken_name) if p)


def money_parts(amount: Decimal) -> list[tuple[int, Gender, str]]:
    """(number, its gender, the agreed currency word) for rubles, then kopecks when non-zero."""
    rubles, kopecks = rubles_and_kopecks(amount)
    parts = [(rubles, noun_gender("рубль"), agree_noun("рубль", rubles))]
    if kopecks:
        parts.append((kopecks, noun_gender("копейка"), agree_noun("копейка", kopecks)))
    return parts


def money_phrase(amount: Decimal) -> str:
    """Decimal('1200.50') -> 'одна тысяча двести рублей пятьдесят копеек' (kopecks only when non-zero)."""
    return " ".join(f"{spell_number(n, gender)} {word}" for n, gender, word in money_parts(amount))


def date_phrase(day: date) -> str:
    """date(2026, 11, 28) -> 'двадцать восьмого ноября' (the genitive, as after "доставка")."""
    return f"{ordinal_genitive(day.day)} {MONTHS_GENITIVE[day.month - 1]}"


def relative_day(day: date, today: date) -> str | None:
    """'сегодня' / 'завтра' / 'послезавтра' / 'в понедельник' within a week, else None (only the date is said)."""
    delta = (day - today).days
    if 0 <= delta <= 2:
        return ("сегодня", "завтра", "послезавтра")[delta]
    if 2 < delta < 7:
        return WEEKDAYS_ACCUSATIVE[day.isoweekday() - 1]
    return None


def delivery_day_phrase(day: date, today: date) -> str:
    """'завтра, двадцать восьмого ноября' / 'послезавтра, …' / 'в понедельник, тридцатого ноября'.

    Beyond a week (or in the past, which should not happen) only the date is said.
    """
    relative = relative_day(day, today)
    return f"{relative}, {date_phrase(day)}" if relative else date_phrase(day)


def join_list(items: list[str]) -> str:
    """'a, b и c'."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " и " + items[-1]
