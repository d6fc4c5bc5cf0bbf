"""Spoken words -> the keys they stand for, per question and language (text only, no audio)."""

from __future__ import annotations

import pytest

from ivr.speech.answers import KEEP, UNK, Word, question_of, question_words


def _words(text: str, conf: float = 1.0) -> list[Word]:
    return [Word(w, conf, i * 0.3, i * 0.3 + 0.25) for i, w in enumerate(text.split())]


RU = [
    ("menu", "да", "1"),
    ("menu", "повторить", "1"),
    ("menu", "заказать", "1"),
    ("menu", "да повторить", "1"),
    ("menu", "изменить", "2"),
    ("menu", "другое количество", "2"),
    ("menu", "оператор", "0"),
    ("menu", "человек", "0"),
    ("menu", "менеджер пожалуйста", "0"),
    ("menu", "да нет", None),  # two meanings: no guess
    ("menu", "три", None),  # a number is no menu answer
    ("menu", "нет", None),
    ("quantity", "три", "3"),
    ("quantity", "двадцать две", "22"),
    ("quantity", "двадцать два", "22"),
    ("quantity", "пять штук", "5"),
    ("quantity", "одну бутылку", "1"),
    ("quantity", "одно", "1"),
    ("quantity", "две штуки пожалуйста", "2"),
    ("quantity", "пятьдесят", "50"),
    ("quantity", "ноль", "0"),
    ("quantity", "убрать", "0"),
    ("quantity", "оставить", KEEP),
    ("quantity", "двух", None),  # an oblique case answers another question
    ("quantity", "штук", None),  # fillers alone say nothing
    ("quantity", "пятьдесят один", None),  # above max_quantity: not in the grammar at all
    ("quantity", "три пять", None),
    ("confirm", "да", "1"),
    ("confirm", "подтверждаю", "1"),
    ("confirm", "нет", "0"),
    ("confirm", "оператор", "0"),
    ("confirm", "изменить", None),
]
EN = [
    ("menu", "yes", "1"),
    ("menu", "repeat the order", "1"),
    ("menu", "change", "2"),
    ("menu", "different quantity", "2"),
    ("menu", "operator", "0"),
    ("menu", "human please", "0"),
    ("menu", "no", None),
    ("quantity", "three", "3"),
    ("quantity", "twenty two bottles", "22"),
    ("quantity", "twenty-two", "22"),
    ("quantity", "fifty", "50"),
    ("quantity", "zero", "0"),
    ("quantity", "remove", "0"),
    ("quantity", "keep", KEEP),
    ("quantity", "fifty one", None),
    ("confirm", "yes", "1"),
    ("confirm", "confirm", "1"),
    ("confirm", "no", "0"),
    ("confirm", "maybe", None),
]


@pytest.mark.parametrize(("question", "said", "digits"), RU)
def test_russian_words_map_to_keys(question, said, digits):
    answer = question_words(question, "ru").interpret(_words(said), min_confidence=0.5)
    assert (answer.digits if answer else None) == digits


@pytest.mark.parametrize(("question", "said", "digits"), EN)
def test_english_words_map_to_keys(question, said, digits):
    answer = question_words(question, "en").interpret(_words(said), min_confidence=0.5)
    assert (answer.digits if answer else None) == digits


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_quantity_up_to_the_limit_has_words(language):
    table = question_words("quantity", language, 50)
    said = {int(d) for d in table.phrases.values() if d != KEEP}
    assert said == set(range(51))


def test_russian_feminine_and_masculine_forms_are_the_same_number():
    table = question_words("quantity", "ru")
    for said in ("один", "одна", "одно", "одну", "два", "две", "сорок одна", "сорок один"):
        assert table.interpret_text(said) is not None, said
    assert table.interpret_text("сорок одна").digits == table.interpret_text("сорок один").digits == "41"


def test_letter_case_is_normalized():
    assert question_words("quantity", "ru").interpret_text("Четыре").digits == "4"
    assert question_words("confirm", "ru").interpret_text("ПОДТВЕРЖДАЮ").digits == "1"


def test_unk_or_low_confidence_is_no_answer():
    menu = question_words("menu", "ru")
    assert menu.interpret(_words("да"), 0.5) is not None
    assert menu.interpret([Word(UNK, 1.0, 0.0, 0.3)], 0.5) is None
    assert menu.interpret([Word("да", 1.0, 0.0, 0.3), Word(UNK, 1.0, 0.3, 0.6)], 0.5) is None
    assert menu.interpret(_words("да", conf=0.49), 0.5) is None
    assert menu.interpret([], 0.5) is None


def test_answer_keeps_the_words_for_the_timeline():
    answer = question_words("quantity", "ru").interpret(_words("пять штук"), 0.5)
    assert answer is not None and answer.text == "пять штук" and answer.digits == "5"


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("question", ["menu", "quantity", "confirm"])
def test_grammar_is_the_table_plus_fillers_and_unk(question, language):
    table = question_words(question, language)
    grammar = table.grammar()
    assert grammar[-1] == UNK and len(grammar) == len(set(grammar))
    assert set(grammar) == set(table.phrases) | set(table.fillers) | {UNK}
    # Everything the grammar lets vosk say back, the table understands (fillers aside).
    for phrase in table.phrases:
        assert table.interpret_text(phrase) is not None, phrase


def test_max_quantity_bounds_the_grammar():
    assert question_words("quantity", "ru", 10).interpret_text("одиннадцать") is None
    assert question_words("quantity", "ru", 99).interpret_text("девяносто девять").digits == "99"


def test_question_of_step():
    assert question_of("menu") == "menu"
    assert question_of("quantity:SKU-1") == "quantity"
    assert question_of("confirm") == "confirm"
    with pytest.raises(ValueError):
        question_of("greeting")


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="language"):
        question_words("menu", "de")
