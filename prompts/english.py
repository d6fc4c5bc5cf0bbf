"""English wording helpers: numbers in words (num2words lang "en"), simple plurals, dates."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from num2words import num2words

from prompts.amounts import rubles_and_kopecks

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Cyrillic names said by an English voice: a plain readable transliteration ("Алексей" -> "Alexey").
_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
    "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
}


def spell_number(n: int) -> str:
    """1920 -> 'one thousand nine hundred twenty' (no commas, no "and": read evenly by TTS)."""
    if n < 0:
        raise ValueError("negative numbers are not spoken in prompts")
    words = num2words(int(n), lang="en").replace(",", "")
    return re.sub(r"\band\s+", "", words)


_SCALES = ("thousand", "million", "billion", "trillion")


def number_units(n: int) -> list[str]:
    """:func:`spell_number` cut where a recording can be reused: "nine hundred", a scale word and the
    tens-and-ones word are each one unit (1920 -> one | thousand | nine hundred | twenty)."""
    units: list[str] = []
    for word in spell_number(n).split():
        if word == "hundred" and units:
            units[-1] = f"{units[-1]} hundred"
        else:
            units.append(word)
    return units


def ordinal(n: int) -> str:
    return num2words(int(n), lang="en", to="ordinal")


def pluralize(noun: str) -> str:
    """Plural of a unit phrase: the head noun (last word, or the word before " of ") takes the plural.

    bottle -> bottles, box -> boxes, battery -> batteries, "19-litre bottle" -> "19-litre bottles",
    "pack of cups" -> "packs of cups".
    """
    head, sep, tail = noun.partition(" of ")
    words = head.split(" ")
    last = words[-1]
    lower = last.lower()
    if re.search(r"(s|x|z|ch|sh)$", lower):
        words[-1] = last + "es"
    elif re.search(r"[^aeiou]y$", lower):
        words[-1] = last[:-1] + "ies"
    else:
        words[-1] = last + "s"
    return " ".join(words) + sep + tail


def quantity_parts(n: int, unit: str, name: str | None) -> tuple[str, str]:
    """The pieces of :func:`quantity_phrase` after the number: ('19-litre bottles', 'of Pearl Dew water')."""
    if n < 1:
        raise ValueError(f"quantity must be at least 1, got {n}")
    counted = unit if n == 1 else pluralize(unit)
    if not name:
        return counted, ""
    # Catalogues write name_en either as "Pearl Dew water" or as "of Pearl Dew water"
    # (mirroring the Russian genitive); both read as "… bottles of Pearl Dew water".
    name = name.strip()
    return counted, name if name.lower().startswith("of ") else f"of {name}"


def quantity_phrase(n: int, unit: str, name: str | None) -> str:
    """'four 19-litre bottles of Pearl Dew water' / 'one pump'."""
    counted, spoken_name = quantity_parts(n, unit, name)
    return " ".join(p for p in (spell_number(n), counted, spoken_name) if p)


def money_parts(amount: Decimal) -> list[tuple[int, str]]:
    """(number, currency word) for roubles, then kopecks when non-zero."""
    rubles, kopecks = rubles_and_kopecks(amount)
    parts = [(rubles, "rouble" if rubles == 1 else "roubles")]
    if kopecks:
        parts.append((kopecks, "kopeck" if kopecks == 1 else "kopecks"))
    return parts


def money_phrase(amount: Decimal) -> str:
    """Decimal('1920') -> 'one thousand nine hundred twenty roubles' (the currency stays roubles)."""
    return " and ".join(f"{spell_number(n)} {word}" for n, word in money_parts(amount))


def date_phrase(day: date) -> str:
    """date(2026, 11, 28) -> 'November twenty-eighth' (words: every engine reads them the same)."""
    return f"{MONTHS[day.month - 1]} {ordinal(day.day)}"


def relative_day(day: date, today: date) -> tuple[str, str]:
    """What precedes the date and the separator: ('tomorrow', ', '), ('on Monday', ', ') or ('on', ' ')."""
    delta = (day - today).days
    if 0 <= delta <= 2:
        return ("today", "tomorrow", "the day after tomorrow")[delta], ", "
    if 2 < delta < 7:
        return f"on {WEEKDAYS[day.weekday()]}", ", "
    return "on", " "


def delivery_day_phrase(day: date, today: date) -> str:
    relative, separator = relative_day(day, today)
    return f"{relative}{separator}{date_phrase(day)}"


def hour_parts(hour: int) -> tuple[int | None, str]:
    """(the number said, the words after it): 9 -> (9, 'in the morning'), 12 -> (None, 'noon')."""
    if not 0 <= hour <= 24:
        raise ValueError(f"hour out of range: {hour}")
    if hour in (0, 24):
        return None, "midnight"
    if hour == 12:
        return None, "noon"
    if hour < 12:
        return hour, "in the morning"
    return hour - 12, "in the afternoon" if hour < 18 else "in the evening"


def hour_phrase(hour: int) -> str:
    """9 -> 'nine in the morning', 14 -> 'two in the afternoon', 12 -> 'noon', 0 -> 'midnight'.

    Words rather than "9 a.m.": the abbreviation's full stop would end the sentence for TTS.
    """
    number, words = hour_parts(hour)
    return words if number is None else f"{spell_number(number)} {words}"


def transliterate(text: str) -> str:
    """Cyrillic letters to Latin so an English voice can say a Russian name: 'Алексей' -> 'Alexey'."""
    text = re.sub("кс", "x", text)
    text = re.sub("Кс", "X", text)
    out = []
    for char in text:
        latin = _TRANSLIT.get(char.lower())
        if latin is None:
            out.append(char)
        elif char.isupper():
            out.append(latin[:1].upper() + latin[1:])
        else:
            out.append(latin)
    return "".join(out)


def join_list(items: list[str]) -> str:
    """'a, b and c' (no serial comma)."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
