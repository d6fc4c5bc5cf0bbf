"""Prompt texts per language: templates from ``prompts/catalogue/<lang>.toml`` filled with spoken words.

A template is a ``str.format`` string. Its fields are the prompt's parameters (``{order}``,
``{total}``) or the id of a static prompt to include (``{menu}``); a format spec chooses a Russian
case where grammar needs one (``не больше {max:gent}``). Parameters are plain data (any objects
with the attributes of the protocols below, ``Decimal`` money, ``datetime.date`` dates); the
language module turns them into words, so the text is ready for any TTS engine.

A prompt renders as a sequence of :class:`Segment` s whose texts, joined, are the sentence: template
literals, field values cut into reusable units (a number word, an agreed unit, a name, a date), and
the punctuation and spaces between them. ``render`` is that join, so the words on the timeline and
the audio assembled from the units come from one rendering and cannot drift apart.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, Literal, Protocol, runtime_checkable

from prompts import english, russian

# The contract with the flow engine: every prompt id and the parameters it is rendered with.
PROMPT_PARAMS: Mapping[str, tuple[str, ...]] = {
    "greeting_menu": ("customer", "order"),
    "greeting_menu_nameless": ("order",),
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
    "order_already_placed": ("number",),
    "after_hours_callback": ("open_hour", "close_hour"),
    "after_hours_no_number": ("open_hour", "close_hour"),
    "callback_promised": (),
    "callback_impossible": (),
    "queue_callback_offer": (),
}

# A prompt that says the caller's name, and the same words without it. A name is synthesized the
# first time its customer calls (every other unit is shared and warmed at start); when that takes
# longer than the caller may wait in silence, the call says the nameless variant instead of handing
# the caller to an operator (ivr.calls.repeat_order_call).
NAMELESS: Mapping[str, str] = {"greeting_menu": "greeting_menu_nameless"}

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


@dataclass(frozen=True)
class Segment:
    """A slice of a rendered prompt.

    ``text`` is exactly as it appears in the sentence. ``say`` are the units a voice says for it,
    each one reusable recording ("1920" is said as одна | тысяча | девятьсот | двадцать); empty for
    punctuation and spaces, which are pauses. ``kind``: a template literal, a field value said as
    written, a number said by its units (a capital at a sentence start changes its text, not its
    units), or a gap.
    """

    text: str
    say: tuple[str, ...] = ()
    kind: Literal["literal", "value", "number", "gap"] = "value"

    @property
    def is_gap(self) -> bool:
        return self.kind == "gap"


def _gap(text: str) -> Segment:
    return Segment(re.sub(r"\s+", " ", text), (), "gap")


def _words(text: str, kind: Literal["literal", "value"] = "value") -> list[Segment]:
    """Words said as one unit (a name, an agreed noun, a literal between two fields)."""
    text = " ".join(text.split())
    return [Segment(text, (text,), kind)] if text else []


def _number(units: Sequence[str]) -> Segment:
    return Segment(" ".join(units), tuple(units), "number")


def _literal(text: str) -> list[Segment]:
    """A template literal: its leading and trailing punctuation are pauses, the words one unit."""
    match = _LITERAL_RE.fullmatch(text)
    assert match is not None  # the pattern matches any string
    lead, core, trail = match.groups()
    pieces = [_gap(lead)] if lead else []
    pieces += _words(core, "literal")
    if trail:
        pieces.append(_gap(trail))
    return pieces


def _joined(parts: Sequence[list[Segment]], last: str, sep: str = ", ") -> list[Segment]:
    """'a, b и c' over segment lists."""
    pieces: list[Segment] = []
    for i, part in enumerate(parts):
        if i:
            if i == len(parts) - 1:
                pieces += [_gap(" "), *_words(last), _gap(" ")]
            else:
                pieces.append(_gap(sep))
        pieces += part
    return pieces


_LITERAL_RE = re.compile(r"([\W_]*)(.*?)([\W_]*)", re.DOTALL)
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
    def spoken(self, name: str, value: Any, params: Mapping[str, Any], spec: str) -> list[Segment]: ...


def _no_spec(name: str, spec: str) -> None:
    if spec:
        raise PromptParamsError(f"format spec {spec!r} does not apply to {name}")


def _customer(value: Any) -> Customer:
    if not isinstance(value, Customer):
        raise PromptParamsError("customer lacks first_name/patronymic/last_name")
    return value


class _RussianSpeaker:
    def item(self, line: OrderLine) -> list[Segment]:
        gender, counted, name = russian.quantity_parts(line.quantity, line.unit, line.name)
        pieces = [_number(russian.number_units(line.quantity, gender)), _gap(" "), *_words(counted)]
        return pieces + [_gap(" "), *_words(name)] if name else pieces

    def order_number(self, number: str) -> list[Segment]:
        # Ids are often typed with Latin lookalikes ("A-1002"): a Russian voice switches to
        # English on a Latin letter ("эй"), so lookalikes are said as the Cyrillic letter.
        pieces: list[Segment] = []
        for token in _order_number_tokens(number):
            if pieces:
                pieces.append(_gap(" "))
            if token.isdigit():
                pieces.append(Segment(token, tuple(russian.number_units(int(token))), "number"))
            else:
                pieces += _words(token.translate(_LATIN_TO_CYRILLIC))
        return pieces

    def spoken(self, name: str, value: Any, params: Mapping[str, Any], spec: str) -> list[Segment]:
        if name in ("max", "window_start", "window_end", "open_hour", "close_hour"):
            n = _check(value, int, name)
            if n < 0:
                raise PromptParamsError(f"{name} must not be negative")
            return [_number(russian.number_units(n, "m", spec or "nomn"))]
        _no_spec(name, spec)
        match name:
            case "customer":
                c = _customer(value)
                return _words(" ".join(p for p in (c.first_name, c.patronymic) if p))
            case "order":
                return _joined([self.item(line) for line in _order_lines(value, name)], "и")
            case "item":
                return self.item(_line(value, name))
            case "number":
                return self.order_number(str(value))
            case "total":
                pieces: list[Segment] = []
                for n, gender, word in russian.money_parts(Decimal(_check(value, Decimal | int, name))):
                    if pieces:
                        pieces.append(_gap(" "))
                    pieces += [_number(russian.number_units(n, gender)), _gap(" "), *_words(word)]
                return pieces
            case "delivery_date":
                today = _check(params["today"], date, "today")
                day = _check(value, date, name)
                relative = russian.relative_day(day, today)
                return [*_words(relative), _gap(", "), *self.date(day)] if relative else self.date(day)
            case "today":
                return self.date(_check(value, date, name))
        raise PromptParamsError(f"no wording for parameter {name!r}")

    def date(self, day: date) -> list[Segment]:
        return [*_words(russian.ordinal_genitive(day.day)), _gap(" "), *_words(russian.MONTHS_GENITIVE[day.month - 1])]


class _EnglishSpeaker:
    def item(self, line: OrderLine) -> list[Segment]:
        unit = line.unit_en or "item"  # never hand Cyrillic to an English voice
        counted, name = english.quantity_parts(line.quantity, unit, line.name_en)
        pieces = [_number(english.number_units(line.quantity)), _gap(" "), *_words(counted)]
        return pieces + [_gap(" "), *_words(name)] if name else pieces

    def order_number(self, number: str) -> list[Segment]:
        pieces: list[Segment] = []
        previous = ""
        for token in (english.transliterate(t) for t in _order_number_tokens(number)):
            if pieces:
                # "A 1002" makes espeak-ng say the article "a"; "A-1002" makes it say the letter.
                single_letter = len(previous) == 1 and previous.isascii() and previous.isalpha()
                pieces.append(_gap("-" if single_letter and token[:1].isdigit() else " "))
            if token.isdigit():
                pieces.append(Segment(token, tuple(english.number_units(int(token))), "number"))
            else:
                pieces += _words(token)
            previous = token
        return pieces

    def spoken(self, name: str, value: Any, params: Mapping[str, Any], spec: str) -> list[Segment]:
        _no_spec(name, spec)
        match name:
            case "customer":
                return _words(english.transliterate(_customer(value).first_name.strip()))
            case "order":
                return _joined([self.item(line) for line in _order_lines(value, name)], "and")
            case "item":
                return self.item(_line(value, name))
            case "max":
                return [_number(english.number_units(_check(value, int, name)))]
            case "window_start" | "window_end" | "open_hour" | "close_hour":
                number, words = english.hour_parts(_check(value, int, name))
                head = [] if number is None else [_number(english.number_units(number)), _gap(" ")]
                return [*head, *_words(words)]
            case "number":
                return self.order_number(str(value))
            case "total":
                pieces: list[Segment] = []
                for n, word in english.money_parts(Decimal(_check(value, Decimal | int, name))):
                    if pieces:
                        pieces += [_gap(" "), *_words("and"), _gap(" ")]
                    pieces += [_number(english.number_units(n)), _gap(" "), *_words(word)]
                return pieces
            case "delivery_date":
                today = _check(params["today"], date, "today")
                day = _check(value, date, name)
                relative, separator = english.relative_day(day, today)
                return [*_words(relative), _gap(separator), *self.date(day)]
            case "today":
                return self.date(_check(value, date, name))
        raise PromptParamsError(f"no wording for parameter {name!r}")

    def date(self, day: date) -> list[Segment]:
        return [*_words(english.MONTHS[day.month - 1]), _gap(" "), *_words(english.ordinal(day.day))]


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
        """The prompt's text: the join of :meth:`segments`."""
        return "".join(segment.text for segment in self.segments(prompt_id, **params))

    def segments(self, prompt_id: str, **params: Any) -> tuple[Segment, ...]:
        """The prompt as segments whose texts, joined, are the sentence (see :class:`Segment`)."""
        template = self.template(prompt_id)
        expected = PROMPT_PARAMS[prompt_id]
        missing = [p for p in expected if p not in params]
        unexpected = [p for p in params if p not in expected]
        if missing or unexpected:
            raise PromptParamsError(f"{prompt_id}: missing {missing}, unexpected {unexpected}")
        pieces: list[Segment] = []
        try:
            for literal, field, spec, conversion in string.Formatter().parse(template):
                pieces += _literal(literal)
                if field is None:
                    continue
                if conversion:
                    raise PromptParamsError(f"{prompt_id}: conversion !{conversion} is not supported")
                if field in params:
                    pieces += self._speaker.spoken(field, params[field], params, spec or "")
                else:  # an included static prompt, checked at load
                    _no_spec(field, spec or "")
                    pieces += self.segments(field)
        except (ValueError, TypeError) as exc:  # a number or a noun pymorphy3/num2words cannot say
            if isinstance(exc, PromptError):
                raise
            raise PromptParamsError(f"{prompt_id}: {exc}") from exc
        return _finish(pieces)


def _finish(pieces: list[Segment]) -> tuple[Segment, ...]:
    """Spaces as ``" ".join(text.split())`` leaves them, sentences capitalized, empty gaps dropped."""
    merged: list[Segment] = []
    for piece in pieces:
        if piece.is_gap and merged and merged[-1].is_gap:
            merged[-1] = _gap(merged[-1].text + piece.text)
        elif piece.text:
            merged.append(piece)
    if merged and merged[0].is_gap:
        merged[0] = _gap(merged[0].text.lstrip())
    if merged and merged[-1].is_gap:
        merged[-1] = _gap(merged[-1].text.rstrip())
    merged = [piece for piece in merged if piece.text]
    joined = "".join(piece.text for piece in merged)
    capitalized = _capitalize_sentences(joined)
    if len(capitalized) != len(joined):  # a letter whose capital is longer: say it all as one unit
        return (Segment(capitalized, (capitalized,), "value"),)
    out: list[Segment] = []
    pos = 0
    for piece in merged:
        text = capitalized[pos : pos + len(piece.text)]
        pos += len(piece.text)
        if text == piece.text or piece.kind == "number":
            out.append(Segment(text, piece.say, piece.kind))
        else:  # words said as written: say them as now written
            out.append(Segment(text, (text,), piece.kind))
    return tuple(out)


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
