"""The phrasebook renders every prompt id in both languages from the packaged catalogues."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from prompts.phrasebook import (
    PROMPT_PARAMS,
    CatalogueError,
    Phrasebook,
    PromptParamsError,
    UnknownPrompt,
    digit_groups,
    static_prompt_ids,
)


@dataclass(frozen=True)
class Customer:
    first_name: str
    patronymic: str
    last_name: str


@dataclass(frozen=True)
class Line:
    quantity: int
    unit: str
    name: str
    unit_en: str | None = None
    name_en: str | None = None


CUSTOMER = Customer("Алексей", "Сергеевич", "Иванов")
WATER = Line(4, "бутылка", "воды «Жемчужная роса» 19 л", "19-litre bottle", "Pearl Dew water")
CUPS = Line(2, "упаковка стаканчиков", "", "pack of cups")
PUMP = Line(1, "помпа", "", "pump")
TODAY = date(2026, 11, 27)  # a Friday

SAMPLE_PARAMS = {
    "customer": CUSTOMER,
    "order": [WATER, CUPS, PUMP],
    "item": WATER,
    "max": 50,
    "number": "A-1002",
    "total": Decimal("1920.00"),
    "delivery_date": date(2026, 11, 28),
    "today": TODAY,
    "window_start": 9,
    "window_end": 14,
    "open_hour": 9,
    "close_hour": 20,
}

MENU_RU = (
    "Чтобы повторить заказ, нажмите 1. Чтобы изменить количество, нажмите 2. "
    "Чтобы поговорить с оператором, нажмите 0."
)


@pytest.fixture(params=["ru", "en"])
def phrasebook(request):
    return Phrasebook.load(request.param)


def test_every_prompt_renders_in_both_languages(phrasebook):
    assert set(phrasebook.prompt_ids) == set(PROMPT_PARAMS)
    for prompt_id, names in PROMPT_PARAMS.items():
        text = phrasebook.render(prompt_id, **{n: SAMPLE_PARAMS[n] for n in names})
        assert text.strip() == text and text[0].isupper() and text[-1] in ".!?"
        assert "{" not in text and "}" not in text
        if phrasebook.language == "en":
            assert not any("а" <= c.lower() <= "я" for c in text), text


def test_load_is_cached():
    assert Phrasebook.load("ru") is Phrasebook.load("ru")


def test_greeting_menu_russian_exact():
    text = Phrasebook.load("ru").render("greeting_menu", customer=CUSTOMER, order=[WATER])
    assert text == (
        "Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки воды «Жемчужная роса» "
        "19 литров. " + MENU_RU
    )


def test_greeting_menu_english_uses_first_name_and_english_names():
    text = Phrasebook.load("en").render("greeting_menu", customer=CUSTOMER, order=[WATER])
    assert text == (
        "Hello, Alexey. Your last order: four 19-litre bottles of Pearl Dew water. "
        "To repeat the order, press 1. To change quantities, press 2. To speak to an operator, press 0."
    )


def test_menu_alone_and_static_texts():
    ru = Phrasebook.load("ru")
    assert ru.render("menu") == MENU_RU
    assert ru.render("no_input") == "Извините, я вас не слышу."
    assert ru.render("invalid_input") == "Извините, такой клавиши нет."
    assert ru.render("to_operator") == "Соединяю с оператором. Пожалуйста, оставайтесь на линии."
    assert ru.render("technical_problem") == "Извините, произошла техническая ошибка. Соединяю с оператором."
    assert ru.render("order_emptied") == "В заказе не осталось товаров. Соединяю с оператором."


def test_order_lines_read_as_a_natural_list():
    ru = Phrasebook.load("ru").render("confirm_order", order=[WATER, CUPS, PUMP])
    assert ru == (
        "Ваш новый заказ: четыре бутылки воды «Жемчужная роса» 19 литров, две упаковки стаканчиков "
        "и одна помпа. Чтобы подтвердить, нажмите 1. Чтобы поговорить с оператором, нажмите 0."
    )
    en = Phrasebook.load("en").render("confirm_order", order=[WATER, CUPS, PUMP])
    assert en.startswith(
        "Your new order: four 19-litre bottles of Pearl Dew water, two packs of cups and one pump. "
    )
    two = Phrasebook.load("ru").render("confirm_order", order=[CUPS, PUMP])
    assert two.startswith("Ваш новый заказ: две упаковки стаканчиков и одна помпа. ")


def test_ask_quantity_starts_with_the_capitalized_line():
    text = Phrasebook.load("ru").render("ask_quantity", item=WATER, max=50)
    assert text == (
        "Четыре бутылки воды «Жемчужная роса» 19 литров. Введите новое количество и нажмите решётку. "
        "Чтобы оставить как есть, просто нажмите решётку, чтобы убрать, введите ноль."
    )


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(50, "пятидесяти"), (1, "одного"), (2, "двух"), (24, "двадцати четырёх"), (100, "ста")],
)
def test_quantity_too_large_puts_the_limit_in_the_genitive(limit, expected):
    text = Phrasebook.load("ru").render("quantity_too_large", max=limit)
    assert text == f"Можно заказать не больше {expected}."


def test_order_placed_russian_exact():
    text = Phrasebook.load("ru").render(
        "order_placed",
        number="A-1002",
        total=Decimal("1920"),
        delivery_date=date(2026, 11, 28),
        today=TODAY,
        window_start=9,
        window_end=14,
    )
    assert text == (
        "Заказ номер А 1002 оформлен. Сумма: одна тысяча девятьсот двадцать рублей. "
        "Доставка завтра, двадцать восьмого ноября, с девяти до четырнадцати часов. "
        "Спасибо, до свидания."
    )


def test_order_placed_english_exact():
    text = Phrasebook.load("en").render(
        "order_placed",
        number="A-1002",
        total=Decimal("1920"),
        delivery_date=date(2026, 11, 28),
        today=TODAY,
        window_start=9,
        window_end=14,
    )
    assert text == (
        "Order number A-1002 has been placed. The total is one thousand nine hundred twenty roubles. "
        "Delivery tomorrow, November twenty-eighth, from nine in the morning to two in the afternoon. "
        "Thank you, goodbye."
    )


def test_order_placed_weekday_and_kopecks():
    params = dict(SAMPLE_PARAMS)
    params.update(total=Decimal("1201.01"), delivery_date=date(2026, 11, 30))
    names = PROMPT_PARAMS["order_placed"]
    ru = Phrasebook.load("ru").render("order_placed", **{n: params[n] for n in names})
    assert "Сумма: одна тысяча двести один рубль одна копейка." in ru
    assert "Доставка в понедельник, тридцатого ноября," in ru
    en = Phrasebook.load("en").render("order_placed", **{n: params[n] for n in names})
    assert "one thousand two hundred one roubles and one kopeck" in en
    assert "Delivery on Monday, November thirtieth," in en


@pytest.mark.parametrize(
    ("digits", "groups"),
    [
        ("1002", ["1002"]),
        ("12345", ["123", "45"]),
        ("1234567", ["123", "45", "67"]),
        ("123456", ["123", "456"]),
        ("0042", ["0", "0", "42"]),
    ],
)
def test_order_numbers_are_read_in_digit_groups(digits, groups):
    assert digit_groups(digits) == groups


def test_unknown_prompt_raises():
    with pytest.raises(UnknownPrompt):
        Phrasebook.load("ru").render("no_such_prompt")


def test_missing_or_unexpected_params_raise():
    ru = Phrasebook.load("ru")
    with pytest.raises(PromptParamsError):
        ru.render("greeting_menu", customer=CUSTOMER)
    with pytest.raises(PromptParamsError):
        ru.render("menu", customer=CUSTOMER)
    with pytest.raises(PromptParamsError):
        ru.render("order_placed", **{**SAMPLE_PARAMS_ORDER_PLACED, "total": 19.2})
    with pytest.raises(PromptParamsError):
        ru.render("confirm_order", order=[])


SAMPLE_PARAMS_ORDER_PLACED = {n: SAMPLE_PARAMS[n] for n in PROMPT_PARAMS["order_placed"]}


def test_unknown_language_and_bad_catalogue_raise():
    with pytest.raises(CatalogueError):
        Phrasebook.load("de")
    with pytest.raises(CatalogueError):
        Phrasebook("ru", {"menu": "x"})
    templates = {pid: "x." for pid in PROMPT_PARAMS}
    templates["greeting_menu"] = "Hello, {caller}."
    with pytest.raises(CatalogueError):
        Phrasebook("en", templates)


def test_static_prompt_ids_take_no_params():
    ids = static_prompt_ids()
    assert set(ids) == {
        "menu", "no_input", "invalid_input", "to_operator", "technical_problem", "goodbye", "order_emptied",
        "callback_promised", "callback_impossible", "queue_callback_offer",
    }
    for language in ("ru", "en"):
        for prompt_id in ids:
            assert Phrasebook.load(language).render(prompt_id)


def test_english_falls_back_without_english_names():
    line = Line(3, "коробка", "салфеток")
    text = Phrasebook.load("en").render("ask_quantity", item=line, max=5)
    assert text.startswith("Three items. ")


def test_prompts_never_import_ivr():
    import subprocess
    import sys

    code = (
        "import sys, prompts.phrasebook, prompts.russian; "
        "assert not any(m.split('.')[0] == 'ivr' for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_after_hours_prompts_say_the_hours_in_words():
    ru = Phrasebook.load("ru").render("after_hours_callback", open_hour=9, close_hour=20)
    assert "с девяти до двадцати часов" in ru and "перезвоним" in ru
    en = Phrasebook.load("en").render("after_hours_no_number", open_hour=9, close_hour=20)
    assert "from nine in the morning to eight in the evening" in en
