"""The pure parts of the pull: each CRM's record -> our record or a refusal, the pace, the retries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crm_bridge.sync import amocrm, bitrix24
from crm_bridge.sync.client import CrmAuthRefused, CrmThrottled, CrmUnreachable, Pace, Retrying
from crm_bridge.sync.records import MappedCustomer, MappedLine, MappedOrder, MappedProduct, Refusal


def phone(*values: str) -> list[dict]:
    return [{"ID": str(n), "VALUE_TYPE": "WORK", "VALUE": v, "TYPE_ID": "PHONE"} for n, v in enumerate(values)]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"ID": "1", "NAME": "Алексей", "SECOND_NAME": "Сергеевич", "LAST_NAME": "Иванов",
      "PHONE": phone("8 (916) 123-45-67", "+7 916 123 45 67", "+7 495 123-45-67")},
     MappedCustomer("1", "Иванов", "Алексей", "Сергеевич", ("+79161234567", "+74951234567"))),
    ({"ID": "2", "NAME": "Пётр", "PHONE": None}, Refusal("2", "no phone number")),
    ({"ID": "3", "NAME": "Пётр", "PHONE": phone("доб. 12")}, Refusal("3", "no usable phone number (доб. 12)")),
    ({"ID": "4", "NAME": " ", "LAST_NAME": "", "PHONE": phone("+79161234567")},
     Refusal("4", "no name (NAME and LAST_NAME are empty)")),
])
def test_bitrix24_contact(raw, expected) -> None:
    assert bitrix24.map_contact(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ({"ID": "10", "NAME": "Вода 19 л", "CODE": "WATER-19", "PRICE": "350.00", "ACTIVE": "Y"},
     MappedProduct("10", "WATER-19", "Вода 19 л", "штука", Decimal("350.00"), True)),
    ({"ID": "11", "NAME": "Кулер", "CODE": None, "PRICE": "5900", "ACTIVE": "N"},
     MappedProduct("11", "", "Кулер", "штука", Decimal("5900"), False)),
    ({"ID": "12", "NAME": "Без цены", "PRICE": None}, Refusal("12", "no usable PRICE ('')")),
])
def test_bitrix24_product(raw, expected) -> None:
    assert bitrix24.map_product(raw) == expected


AT = "2026-11-01T10:00:00+03:00"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"ID": "5", "CONTACT_ID": "1", "DATE_CREATE": AT, "STAGE_SEMANTIC_ID": "S",
      "PRODUCT_ROWS": [{"PRODUCT_ID": 10, "QUANTITY": "4.00", "PRICE": "350.00"}]},
     MappedOrder("5", "1", datetime(2026, 11, 1, 7, 0, tzinfo=UTC), False,
                 (MappedLine("10", 4, Decimal("350.00")),))),
    ({"ID": "6", "CONTACT_ID": "1", "DATE_CREATE": AT, "STAGE_SEMANTIC_ID": "F",
      "PRODUCT_ROWS": [{"PRODUCT_ID": 10, "QUANTITY": 1, "PRICE": 350}]},
     MappedOrder("6", "1", datetime(2026, 11, 1, 7, 0, tzinfo=UTC), True, (MappedLine("10", 1, Decimal(350)),))),
    ({"ID": "7", "CONTACT_ID": None, "DATE_CREATE": AT, "PRODUCT_ROWS": []}, Refusal("7", "no contact")),
    ({"ID": "8", "CONTACT_ID": "1", "DATE_CREATE": AT, "PRODUCT_ROWS": []}, Refusal("8", "no product rows")),
    ({"ID": "9", "CONTACT_ID": "1", "DATE_CREATE": AT,
      "PRODUCT_ROWS": [{"PRODUCT_ID": 0, "PRODUCT_NAME": "Доставка", "QUANTITY": 1, "PRICE": 300}]},
     Refusal("9", "row 1: 'Доставка' is not a catalogue product")),
    ({"ID": "10", "CONTACT_ID": "1", "DATE_CREATE": AT, "PRODUCT_ROWS": [{"PRODUCT_ID": 10, "QUANTITY": "1.5"}]},
     Refusal("10", "row 1: quantity '1.5' is not a whole number")),
    ({"ID": "11", "CONTACT_ID": "1", "DATE_CREATE": AT, "_ROWS_ERROR": "Access denied"},
     Refusal("11", "product rows not read: Access denied")),
    ({"ID": "12", "CONTACT_ID": "1", "DATE_CREATE": "вчера", "PRODUCT_ROWS": []},
     Refusal("12", "unreadable DATE_CREATE 'вчера'")),
])
def test_bitrix24_deal(raw, expected) -> None:
    assert bitrix24.map_deal(raw) == expected


def amo_phones(*values: str) -> list[dict]:
    return [{"field_id": 1, "field_code": "PHONE", "values": [{"value": v, "enum_code": "WORK"} for v in values]}]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"id": 1, "first_name": "Алексей Сергеевич", "last_name": "Иванов", "custom_fields_values": amo_phones(
        "+7 916 123-45-67")}, MappedCustomer("1", "Иванов", "Алексей", "Сергеевич", ("+79161234567",))),
    ({"id": 2, "first_name": "John Smith", "last_name": "", "custom_fields_values": amo_phones("+79265554433")},
     MappedCustomer("2", "", "John Smith", "", ("+79265554433",))),
    ({"id": 3, "name": "Петрова Мария Ивановна", "first_name": "", "last_name": "",
      "custom_fields_values": amo_phones("89031112233")},
     MappedCustomer("3", "Петрова", "Мария", "Ивановна", ("+79031112233",))),
    ({"id": 4, "first_name": "Пётр", "custom_fields_values": None}, Refusal("4", "no phone number")),
])
def test_amocrm_contact(raw, expected) -> None:
    assert amocrm.map_contact(raw) == expected


def test_amocrm_product_and_lead() -> None:
    element = {"id": 10, "name": "Вода", "custom_fields_values": [
        {"field_code": "PRICE", "values": [{"value": "350,50"}]}, {"field_code": "SKU", "values": [{"value": "W19"}]},
        {"field_code": "UNIT", "values": [{"value": "бутылка"}]}]}
    assert amocrm.map_product(element) == MappedProduct("10", "W19", "Вода", "бутылка", Decimal("350.50"), True)
    assert amocrm.map_product({"id": 11, "name": "Без цены"}) == Refusal("11", "no usable PRICE ()")
    lead = {"id": 5, "created_at": 1795000000, "status_id": 143, "_embedded": {
        "contacts": [{"id": 8, "is_main": False}, {"id": 7, "is_main": True}],
        "catalog_elements": [{"id": 10, "metadata": {"quantity": 3, "catalog_id": 1}}]}}
    assert amocrm.map_lead(lead) == MappedOrder("5", "7", datetime.fromtimestamp(1795000000, UTC), True,
                                                (MappedLine("10", 3, None),))
    assert amocrm.map_lead({**lead, "_embedded": {"contacts": [{"id": 7}]}}) == Refusal("5", "no products attached")


async def test_the_pace_spaces_requests_at_the_crm_s_rate() -> None:
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 3))
        now[0] += seconds

    pace = Pace(2.0, 2, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        await pace.take()
    assert waits == [0.5, 0.5, 0.5, 0.5]  # a burst of two, then one every half second: 2 per second
    assert now[0] == 2.0


async def test_retries_back_off_doubling_and_give_up_with_the_last_error() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    answers = [CrmThrottled("slow down", after=5.0), CrmUnreachable("HTTP 502"), "page"]

    async def attempt() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await Retrying(retries=3, first=1.0, most=30.0).run(attempt, sleep) == "page"
    assert pauses == [5.0, 2.0]  # Retry-After wins when longer; then doubled from the first

    async def refused() -> str:
        raise CrmAuthRefused("HTTP 401")

    with pytest.raises(CrmAuthRefused):  # never retried: an admin must fix the token
        await Retrying().run(refused, sleep)
    assert pauses == [5.0, 2.0]
