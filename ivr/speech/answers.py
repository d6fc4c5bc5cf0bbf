"""What a caller may say to each question, and what it means: one table per question and language.

Every spoken answer maps to the keys the caller could have pressed instead (the ``digits`` of
:class:`ivr.flows.model.Digits`), so the flow has one path for keys and voice: menu "да" is "1",
a quantity "двадцать две штуки" is "22", "оставить" is a bare "#" (keep the line as it was), a
confirmation "нет" is "0" (the caller does not want this order: an operator sorts it out, the
same as key 0 in the prompt). The same table gives the vosk grammar of the question (its phrases,
its filler words and ``[unk]``), so the recognizer can only hear what the mapping understands.

A result with ``[unk]`` anywhere, a word below the confidence floor, a word outside the table or
two phrases that disagree ("да нет") is no answer: a failed input that the flow re-asks, never a
guess.

Number words come from :mod:`prompts.russian` / :mod:`prompts.english` (the words the prompts say),
in the forms a caller answers "сколько?" with: the nominative in all three genders ("один / одна /
одно", "два / две") and the feminine accusative ("одну": "одну бутылку"). Oblique cases ("двух")
answer other questions and are not accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prompts import english, russian

Question = Literal["menu", "quantity", "confirm"]
QUESTIONS: tuple[Question, ...] = ("menu", "quantity", "confirm")
LANGUAGES = ("ru", "en")
UNK = "[unk]"  # vosk's word for anything outside the grammar
KEEP = ""  # the digits of "keep the line as it was": a bare "#" in the quantity question

_MENU: dict[str, dict[str, tuple[str, ...]]] = {
    "ru": {
        "1": ("да", "повторить", "заказать", "повторить заказ"),
        "2": ("изменить", "другое количество", "изменить заказ", "изменить количество"),
        "0": ("оператор", "человек", "менеджер", "оператора", "менеджера"),
    },
    "en": {
        "1": ("yes", "repeat", "order", "repeat the order", "repeat order"),
        "2": ("change", "change the order", "different quantity", "change quantity"),
        "0": ("operator", "human", "manager", "agent", "person"),
    },
}
_CONFIRM: dict[str, dict[str, tuple[str, ...]]] = {
    "ru": {"1": ("да", "подтверждаю", "верно", "подтвердить"), "0": ("нет", "оператор", "не верно")},
    "en": {"1": ("yes", "confirm", "correct"), "0": ("no", "operator")},
}
_QUANTITY_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "ru": {KEEP: ("оставить", "оставить как есть", "без изменений"), "0": ("убрать", "удалить", "не надо")},
    "en": {KEEP: ("keep", "keep it", "no change"), "0": ("remove", "none", "delete")},
}
# Said around a number and meaning nothing for the answer: "пять штук", "five bottles please".
_QUANTITY_FILLERS: dict[str, tuple[str, ...]] = {
    "ru": ("штук", "штуки", "штука", "штучки", "бутылок", "бутылки", "бутылка", "бутылку", "пожалуйста"),
    "en": ("pieces", "piece", "bottles", "bottle", "units", "unit", "items", "please"),
}
_MENU_FILLERS: dict[str, tuple[str, ...]] = {"ru": ("пожалуйста",), "en": ("please",)}


@dataclass(frozen=True)
class Word:
    """One recognized word as vosk reports it (``SetWords(True)``): times in seconds from the start."""

    word: str
    conf: float
    start: float
    end: float


@dataclass(frozen=True)
class Answer:
    digits: str  # what the caller could have pressed instead ("" = a bare "#": keep)
    text: str  # the words that gave it, for the timeline


def _normal(text: str) -> str:
    # Hyphens: num2words says "twenty-one", vosk's English vocabulary has "twenty" "one".
    return " ".join(text.lower().replace("ё", "е").replace("-", " ").split())


def _number_phrases(language: str, n: int) -> set[str]:
    if language == "en":
        return {_normal(english.spell_number(n))}
    forms = {russian.spell_number(n, gender) for gender in ("m", "f", "n")}
    forms.add(russian.spell_number(n, "f", "accs"))  # "одну", "двадцать одну"
    return {_normal(form) for form in forms}


@dataclass(frozen=True)
class QuestionWords:
    """The phrases one question accepts in one language, their digits, and the filler words."""

    question: Question
    language: str
    phrases: Mapping[str, str]  # normalized phrase -> digits
    fillers: frozenset[str]

    def grammar(self) -> list[str]:
        """The vosk grammar: every phrase, every filler on its own, and ``[unk]`` (noise, other speech)."""
        return [*sorted(self.phrases), *sorted(self.fillers), UNK]

    def interpret(self, words: Sequence[Word], min_confidence: float) -> Answer | None:
        """The answer the words give, or None (no input, noise, low confidence, or no clear meaning)."""
        if not words or any(w.word == UNK or w.conf < min_confidence for w in words):
            return None
        text = " ".join(w.word for w in words)
        return self.interpret_text(text)

    def interpret_text(self, text: str) -> Answer | None:
        """:meth:`interpret` for plain text (no confidences): the table lookup alone."""
        tokens = [t for t in _normal(text).split() if t not in self.fillers]
        if not tokens or UNK in tokens:
            return None
        meanings = self._segment(tokens)
        if meanings is None or len(set(meanings)) != 1:
            return None  # words outside the table, or phrases that disagree ("да нет")
        return Answer(meanings[0], _normal(text))

    def _segment(self, tokens: list[str]) -> list[str] | None:
        # Longest phrase first at each position: "двадцать две" is 22, not 20 then 2 (which would
        # disagree and fail anyway). Repeats of one meaning ("да, да") are one answer.
        longest = max(len(p.split()) for p in self.phrases)
        meanings: list[str] = []
        at = 0
        while at < len(tokens):
            for size in range(min(longest, len(tokens) - at), 0, -1):
                digits = self.phrases.get(" ".join(tokens[at : at + size]))
                if digits is not None:
                    meanings.append(digits)
                    at += size
                    break
            else:
                return None
        return meanings


def _table(entries: Mapping[str, Iterable[str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for digits, phrases in entries.items():
        for phrase in phrases:
            key = _normal(phrase)
            if table.get(key, digits) != digits:
                raise ValueError(f"phrase {phrase!r} means both {table[key]!r} and {digits!r}")
            table[key] = digits
    return table


@functools.cache
def question_words(question: Question, language: str, max_quantity: int = 50) -> QuestionWords:
    """The table of ``question`` in ``language``; quantities go from 0 to ``max_quantity``."""
    if language not in LANGUAGES:
        raise ValueError(f"no speech answers for language {language!r}")
    if question == "menu":
        return QuestionWords(question, language, _table(_MENU[language]), frozenset(_MENU_FILLERS[language]))
    if question == "confirm":
        return QuestionWords(question, language, _table(_CONFIRM[language]), frozenset(_MENU_FILLERS[language]))
    if question == "quantity":
        entries: dict[str, list[str]] = {k: list(v) for k, v in _QUANTITY_WORDS[language].items()}
        for n in range(max_quantity + 1):
            entries.setdefault(str(n), []).extend(_number_phrases(language, n))
        return QuestionWords(question, language, _table(entries), frozenset(_QUANTITY_FILLERS[language]))
    raise ValueError(f"unknown question {question!r}")


def question_of(step: str) -> Question:
    """The question behind a flow step (:attr:`ivr.flows.model.Ask.step`): "quantity:SKU" is a quantity."""
    kind = step.split(":", 1)[0]
    if kind not in QUESTIONS:
        raise ValueError(f"step {step!r} has no spoken answers")
    return kind  # type: ignore[return-value]
