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


def quantity_phrase(n: int, unit: str, name: str | None) -> str:
    """'four 19-litre bottles of Pearl Dew water' / 'one pump'."""
    if n < 1:
        raise ValueError(f"quantity must be at least 1, got {n}")
    counted = unit if n == 1 else pluralize(unit)
    text = f"{spell_number(n)} {counted}"
    if name:
        # Catalogues write name_en either as "Pearl Dew water" or as "of Pearl Dew water"
        # (mirroring the Russian genitive); both read as "… bottles of Pearl Dew water".
        name = name.strip()
        text += f" {name}" if name.lower().startswith("of ") else f" of {name}"
    return text


def money_phrase(amount: Decimal) -> str:
    """Decimal('1920') -> 'one thousand nine hundred twenty roubles' (the currency stays roubles)."""
    rubles, kopecks = rubles_and_kopecks(amount)
    text = f"{spell_number(rubles)} {'rouble' if rubles == 1 else 'roubles'}"
    if kopecks:
        text += f" and {spell_number(kopecks)} {'kopeck' if kopecks == 1 else 'kopecks'}"
    return text


def date_phrase(day: date) -> str:
    """date(2026, 11, 28) -> 'November twenty-eighth' (words: every engine reads them the same)."""
    return f"{MONTHS[day.month - 1]} {ordinal(day.day)}"


def delivery_day_phrase(day: date, today: date) -> str:
    delta = (day - today).days
    spoken_date = date_phrase(day)
    if delta == 0:
        return f"today, {spoken_date}"
    if delta == 1:
        return f"tomorrow, {spoken_date}"
    if delta == 2:
        return f"the day after tomorrow, {spoken_date}"
    if 2 < delta < 7:
        return f"on {WEEKDAYS[day.weekday()]}, {spoken_date}"
    return f"on {spoken_date}"


def hour_phrase(hour: int) -> str:
    """9 -> 'nine in the morning', 14 -> 'two in the afternoon', 12 -> 'noon', 0 -> 'midnight'.

    Words rather than "9 a.m.": the abbreviation's full stop would end the sentence for TTS.
    """
    if not 0 <= hour <= 24:
        raise ValueError(f"hour out of range: {hour}")
    if hour in (0, 24):
        return "midnight"
    if hour == 12:
        return "noon"
    if hour < 12:
        return f"{spell_number(hour)} in the morning"
    part = "in the afternoon" if hour < 18 else "in the evening"
    return f"{spell_number(hour - 12)} {part}"


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
