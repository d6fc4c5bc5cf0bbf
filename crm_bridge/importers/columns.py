"""Accepted column headers per import kind: canonical names plus Russian (and common) aliases."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PUNCT = re.compile(r"[.,:;()\"'*]")
_SPACES = re.compile(r"[\s_\-]+")


def normalize_header(text: object) -> str:
    """Case-, space- and punctuation-insensitive key: "Ф.И.О." -> "фио", "Номер  заказа" -> "номер заказа"."""
    value = str(text or "").strip().lower().replace("ё", "е")
    value = _PUNCT.sub("", value)
    return _SPACES.sub(" ", value).strip()


@dataclass(frozen=True)
class Layout:
    kind: str
    aliases: dict[str, tuple[str, ...]]  # canonical column -> accepted headers
    required: tuple[tuple[str, ...], ...]  # each group: at least one of these columns must exist
    # Columns whose cells may hold line breaks (several phones, an address); in any other column a
    # line break inside a quoted CSV cell means a quote was left open and swallowed the next rows.
    multiline: frozenset[str] = frozenset()

    def lookup(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for canonical, names in self.aliases.items():
            for name in (canonical, *names):
                table[normalize_header(name)] = canonical
        return table


CUSTOMERS = Layout(
    kind="customers",
    aliases={
        "customer_id": ("id", "код", "клиент", "код клиента", "id клиента", "номер клиента", "customer"),
        "last_name": ("фамилия", "surname"),
        "first_name": ("имя", "name"),
        "patronymic": ("отчество", "middle name"),
        "full_name": ("фио", "ф и о", "полное имя", "fio"),
        "phones": ("phone", "телефон", "телефоны", "тел", "номер телефона", "номера телефонов"),
        "address": ("адрес", "адрес доставки"),
        "language": ("язык", "lang"),
        "company": ("организация", "компания", "юрлицо", "наименование организации", "покупатель"),
        "inn": ("инн", "tax id"),
        "kpp": ("кпп",),
    },
    required=(("customer_id",), ("full_name", "last_name", "first_name")),
    multiline=frozenset({"phones", "address"}),
)

PRODUCTS = Layout(
    kind="products",
    aliases={
        "sku": ("артикул", "код товара", "код"),
        "price": ("цена", "цена руб", "стоимость"),
        "unit": ("единица", "ед", "ед изм", "единица измерения"),
        "name": ("наименование", "название", "товар"),
        "unit_en": ("единица en", "unit en"),
        "name_en": ("наименование en", "название en", "name en"),
        "active": ("активен", "активный", "в продаже"),
    },
    required=(("sku",), ("price",), ("unit",), ("name",)),
)

ORDERS = Layout(
    kind="orders",
    aliases={
        "order_id": ("номер заказа", "заказ", "№ заказа", "№", "id заказа"),
        "customer_id": ("клиент", "код клиента", "id клиента", "номер клиента", "customer"),
        "ordered_at": ("дата", "дата заказа", "date"),
        "sku": ("артикул", "код товара"),
        "quantity": ("количество", "кол во", "колво", "qty"),
        "price": ("цена", "unit_price", "цена за единицу"),
        # The order's deal stage: a code of [deals] stages or its display name (optional).
        "stage": ("deal_stage", "стадия", "этап", "стадия сделки", "этап сделки", "сделка"),
    },
    required=(("order_id",), ("customer_id",), ("ordered_at",), ("sku",), ("quantity",)),
)

LAYOUTS = {layout.kind: layout for layout in (CUSTOMERS, PRODUCTS, ORDERS)}
