"""Prompt texts per language: templates from ``prompts/catalogue/<lang>.toml`` filled with spoken words.

A template is a ``str.format`` string. Its fields are the prompt's parameters (``{order}``,
``{total}``) or the id of a static prompt to include (``{menu}``); a format spec chooses a Russian
case where grammar needs one (``не больше {max:gent}``). Parameters are plain data (any objects
with the attributes of the protocols below, ``Decimal`` money, ``datetime.date`` dates); the
language module turns them into words, so the text is ready for any TTS engine.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from prompts import english, russian

# The contract with the flow engine: every prompt id and the parameters it is rendered with.
PROMPT_PARAMS: Mapping[str, tuple[str, ...]] = {
    "greeting_menu": ("customer", "order"),
    "menu": (),
    "no_input": (),
    "invalid_input": (),
    "ask_quantity": ("item", "max"),
    "quantity_too_large": ("max",),
    "confirm_order": ("order",),
    "order_placed": ("number", "total", "delivery_date", "today", "window_start", "window_end"),
    "to_operator": (),
    "technical_problem": (),
    "goodbye": (),
    "order_emptied": (),
    "after_hours_callback": ("open_hour", "close_hour"),
    "after_hours_no_number": ("open_hour", "close_hour"),
    "callback_promised": (),
    "callback_impossible": (),
    "queue_callback_offer": (),
}

LANGUAGES = ("ru", "en")


class PromptError(Exception):
    """Base of the phrasebook's errors."""


class UnknownPrompt(PromptError, LookupError):
    """The prompt id is not in the catalogue."""


class PromptParamsError(PromptError, ValueError):
    """Missing, unexpected or ill-typed parameters for a prompt."""


class CatalogueError(PromptError):
    """A catalogue file is missing, malformed or does not match ``PROMPT_PARAMS``."""


@runtime_checkable
class Customer(Protocol):
    first_name: str
    patronymic: str
    last_name: str


@runtime_checkable
class OrderLine(Protocol):
    quantity: int
    unit: str  # counted noun, nominative singular: "бутылка"
    name: str  # said after the noun: "воды «Жемчужная роса» 19 л"
    unit_en: str | None
    name_en: str | None


def static_prompt_ids() -> tuple[str, ...]:
    """Prompts that take no parameters: their audio can be built ahead of any call."""
    return tuple(prompt_id for prompt_id, params in PROMPT_PARAMS.items() if not params)


class _Spoken:
    """A parameter turned into words; the template's format spec (a case, or nothing) picks the form."""

    def __init__(self, say: Callable[[str], str]) -> None:
        self._say = say

    def __format__(self, spec: str) -> str:
        return self._say(spec)

    def __str__(self) -> str:
        return self._say("")


def _plain(text: str) -> _Spoken:
    def say(spec: str) -> str:
        if spec:
            raise PromptParamsError(f"format spec {spec!r} does not apply here")
        return text

    return _Spoken(say)


_LATIN_TO_CYRILLIC = str.maketrans("ABCEHKMOPTXY", "АВСЕНКМОРТХУ")
_GROUP_RE = re.compile(r"\d+|[^\W\d_]+")


def digit_groups(digits: str) -> list[str]:
    """Split a digit run so TTS says short numbers: '1002' stays, '12345678' -> '123 456 78'.

    Leading zeros are said one by one ('0042' -> '0 0 42'): a number word would drop them.
    """
    groups: list[str] = []
    while digits.startswith("0") and len(digits) > 1:
        groups.append("0")
        digits = digits[1:]
    if len(digits) <= 4:
        return [*groups, digits]
    chunks = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    if len(chunks[-1]) == 1:  # "…1234 5" would end on a lone digit: make it 2 + 2
        tail = chunks[-2] + chunks[-1]
        chunks[-2:] = [tail[:2], tail[2:]]
    for chunk in chunks:
        groups.extend(digit_groups(chunk) if chunk.startswith("0") else [chunk])
    return groups


def _order_number_tokens(number: str) -> list[str]:
    tokens: list[str] = []
    for part in _GROUP_RE.findall(number):
        if part.isdigit():
            tokens.extend(digit_groups(part))
        elif len(part) <= 3:
            tokens.extend(part.upper())  # a prefix like "СЧ" is spelled letter by letter
        else:
            tokens.append(part)
    if not tokens:
        raise PromptParamsError(f"order number {number!r} has nothing to say")
    return tokens


def _check(value: Any, types: type | tuple[type, ...], name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, types):
        raise PromptParamsError(f"{name} must be {types}, got {type(value).__name__}")
    return value


def _order_lines(value: Any, name: str) -> list[OrderLine]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise PromptParamsError(f"{name} must be a non-empty sequence of order lines")
    for line in value:
        _line(line, name)
    return list(value)


def _line(value: Any, name: str) -> OrderLine:
    if not isinstance(value, OrderLine):
        raise PromptParamsError(f"{name}: {value!r} lacks quantity/unit/name/unit_en/name_en")
    _check(value.quantity, int, f"{name}.quantity")
    if value.quantity < 1:
        raise PromptParamsError(f"{name}.quantity must be at least 1")
    return value


class _Speaker(Protocol):
    def spoken(self, name: str, value: Any, params: Mapping[str, Any]) -> _Spoken: ...


class _RussianSpeaker:
    def item(self, line: OrderLine) -> str:
        return russian.quantity_phrase(line.quantity, line.unit, line.name)

    def spoken(self, name: str, value: Any, params: Mapping[str, Any]) -> _Spoken:
        match name:
            case "customer":
                if not isinstance(value, Customer):
                    raise PromptParamsError("customer lacks first_name/patronymic/last_name")
                return _plain(" ".join(p for p in (value.first_name, value.patronymic) if p).strip())
            case "order":
                return _plain(russian.join_list([self.item(line) for line in _order_lines(value, name)]))
            case "item":
                return _plain(self.item(_line(value, name)))
            case "max" | "window_start" | "window_end" | "open_hour" | "close_hour":
                n = _check(value, int, name)
                return _Spoken(lambda spec: russian.spell_number(n, "m", spec or "nomn"))
            case "number":
                # Ids are often typed with Latin lookalikes ("A-1002"): a Russian voice switches to
                # English on a Latin letter ("эй"), so lookalikes are said as the Cyrillic letter.
                text = " ".join(_order_number_tokens(str(value)))
                return _plain(text.translate(_LATIN_TO_CYRILLIC))
            case "total":
                return _plain(russian.money_phrase(Decimal(_check(value, Decimal | int, name))))
            case "delivery_date":
                today = _check(params["today"], date, "today")
                return _plain(russian.delivery_day_phrase(_check(value, date, name), today))
            case "today":
                return _plain(russian.date_phrase(_check(value, date, name)))
        raise PromptParamsError(f"no wording for parameter {name!r}")


class _EnglishSpeaker:
    def item(self, line: OrderLine) -> str:
        unit = line.unit_en or "item"  # never hand Cyrillic to an English voice
        return english.quantity_phrase(line.quantity, unit, line.name_en)

    def spoken(self, name: str, value: Any, params: Mapping[str, Any]) -> _Spoken:
        match name:
            case "customer":
                if not isinstance(value, Customer):
                    raise PromptParamsError("customer lacks first_name/patronymic/last_name")
                return _plain(english.transliterate(value.first_name.strip()))
            case "order":
                return _plain(english.join_list([self.item(line) for line in _order_lines(value, name)]))
            case "item":
                return _plain(self.item(_line(value, name)))
            case "max":
                n = _check(value, int, name)
                return _plain(english.spell_number(n))
            case "window_start" | "window_end" | "open_hour" | "close_hour":
                return _plain(english.hour_phrase(_check(value, int, name)))
            case "number":
                tokens = [english.transliterate(t) for t in _order_number_tokens(str(value))]
                # "A 1002" makes espeak-ng say the article "a"; "A-1002" makes it say the letter.
                text = " ".join(tokens)
                return _plain(re.sub(r"\b([A-Za-z]) (?=\d)", r"\1-", text))
            case "total":
                return _plain(english.money_phrase(Decimal(_check(value, Decimal | int, name))))
            case "delivery_date":
                today = _check(params["today"], date, "today")
                return _plain(english.delivery_day_phrase(_check(value, date, name), today))
            case "today":
                return _plain(english.date_phrase(_check(value, date, name)))
        raise PromptParamsError(f"no wording for parameter {name!r}")


_SPEAKERS: dict[str, Callable[[], _Speaker]] = {"ru": _RussianSpeaker, "en": _EnglishSpeaker}
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)(\w)")


def _capitalize_sentences(text: str) -> str:
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


class Phrasebook:
    """Renders prompt ids to speakable text in one language."""

    def __init__(self, language: str, templates: Mapping[str, str]) -> None:
        if language not in _SPEAKERS:
            raise CatalogueError(f"no wording rules for language {language!r}")
        self.language = language
        self._templates = dict(templates)
        self._speaker = _SPEAKERS[language]()
        _validate(language, self._templates)

    @classmethod
    def load(cls, language: str) -> Phrasebook:
        """The phrasebook of ``language`` from the package's catalogue (parsed once per process)."""
        return _load(language)

    @property
    def prompt_ids(self) -> tuple[str, ...]:
        return tuple(self._templates)

    def template(self, prompt_id: str) -> str:
        try:
            return self._templates[prompt_id]
        except KeyError:
            raise UnknownPrompt(prompt_id) from None

    def render(self, prompt_id: str, **params: Any) -> str:
        template = self.template(prompt_id)
        expected = PROMPT_PARAMS[prompt_id]
        missing = [p for p in expected if p not in params]
        unexpected = [p for p in params if p not in expected]
        if missing or unexpected:
            raise PromptParamsError(f"{prompt_id}: missing {missing}, unexpected {unexpected}")
        values: dict[str, Any] = {}
        for field in _template_fields(template):
            if field in params:
                values[field] = self._speaker.spoken(field, params[field], params)
            else:  # an included static prompt, checked at load
                values[field] = _plain(self.render(field))
        try:
            text = template.format_map(values)
        except (ValueError, TypeError) as exc:
            raise PromptParamsError(f"{prompt_id}: {exc}") from exc
        return _capitalize_sentences(" ".join(text.split()))


def _validate(language: str, templates: Mapping[str, str]) -> None:
    missing = sorted(set(PROMPT_PARAMS) - set(templates))
    unknown = sorted(set(templates) - set(PROMPT_PARAMS))
    if missing or unknown:
        raise CatalogueError(f"{language}: missing prompts {missing}, unknown prompts {unknown}")
    statics = set(static_prompt_ids())
    for prompt_id, template in templates.items():
        if not isinstance(template, str) or not template.strip():
            raise CatalogueError(f"{language}.{prompt_id}: template must be a non-empty string")
        try:
            fields = _template_fields(template)
        except ValueError as exc:
            raise CatalogueError(f"{language}.{prompt_id}: {exc}") from exc
        # A static prompt is plain text; the others may include static prompts (no cycles possible).
        allowed = set() if prompt_id in statics else set(PROMPT_PARAMS[prompt_id]) | statics
        if bad := sorted(fields - allowed):
            raise CatalogueError(f"{language}.{prompt_id}: unknown fields {bad}")


@functools.cache
def _load(language: str) -> Phrasebook:
    if not re.fullmatch(r"[a-z]{2,3}", language):
        raise CatalogueError(f"bad language code {language!r}")
    resource = resources.files("prompts").joinpath("catalogue", f"{language}.toml")
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"no prompt catalogue for language {language!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{language}.toml: {exc}") from exc
    return Phrasebook(language, data)
