"""Upsert customers and their phones by external customer_id."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge import repositories as repo
from crm_bridge.importers import cells
from crm_bridge.importers.bounds import fit
from crm_bridge.importers.report import ImportReport
from crm_bridge.importers.tabular import Row, Table, parse_unique_rows
from crm_bridge.models import Customer, Phone

NAME_FIELDS = ("last_name", "first_name", "patronymic")
INN = re.compile(r"\d{10}|\d{12}")
KPP = re.compile(r"\d{4}[\dA-Z]{2}\d{3}")  # positions 5-6 may be letters (the reason code)


def parse_row(row: Row, columns: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """(customer_id, fields) with only the columns the file has: absent columns are left untouched."""
    values = row.values
    customer_id = cells.text(values.get("customer_id"))
    if not customer_id:
        raise ValueError("missing customer_id")
    fit(customer_id, Customer.customer_id)
    fields: dict[str, Any] = {name: cells.text(values.get(name)) for name in NAME_FIELDS if name in columns}
    full = cells.text(values.get("full_name"))
    if full and not (fields.get("last_name") or fields.get("first_name")):
        fields.update(zip(NAME_FIELDS, cells.split_full_name(full), strict=True))
    if not (fields.get("last_name") or fields.get("first_name")):
        raise ValueError("missing name")
    for name in NAME_FIELDS:
        if name in fields:
            fit(fields[name], getattr(Customer, name))
    if "address" in columns:
        fields["address"] = fit(cells.text(values.get("address")), Customer.address)
    if "language" in columns:
        fields["language"] = cells.language(values.get("language"))
    if "company" in columns:
        fields["company"] = fit(cells.text(values.get("company")), Customer.company)
    if "inn" in columns:
        fields["inn"] = _requisite(values.get("inn"), INN, "ИНН: 10 digits (company) or 12 (person)")
    if "kpp" in columns:
        fields["kpp"] = _requisite(values.get("kpp"), KPP, "КПП: 9 characters")
    if "phones" in columns:
        fields["phones"] = cells.phones(values.get("phones"))
    return customer_id, fields


async def load(session: AsyncSession, table: Table, report: ImportReport) -> None:
    parsed = parse_unique_rows(table, parse_row, "customer_id", report)

    existing = await repo.customers_by_external_ids(session, list(parsed))
    phone_rows = await repo.phone_rows_of(session, [c.id for c in existing.values()])

    fresh: list[tuple[Customer, list[str]]] = []
    for customer_id, (_, fields) in parsed.items():
        numbers = fields.pop("phones", None)
        customer = existing.get(customer_id)
        if customer is None:
            customer = Customer(customer_id=customer_id, **_defaults(fields))
            session.add(customer)
            fresh.append((customer, numbers or []))
            report.created += 1
            continue
        changed = _assign(customer, fields)
        if numbers is not None:
            changed |= await _replace_phones(session, customer, phone_rows.get(customer.id, []), numbers)
        if changed:
            report.updated += 1
        else:
            report.unchanged += 1

    if fresh:
        await session.flush()  # new customers need their ids before their phones
        session.add_all(Phone(number=n, customer_id=c.id) for c, numbers in fresh for n in numbers)
    await session.flush()


def _requisite(value: Any, pattern: re.Pattern[str], rule: str) -> str:
    """An ИНН or КПП cell: empty, or the characters as printed on the invoice."""
    text = cells.text(value).replace(" ", "")  # a number cell (7701234567.0) comes as its digits
    if text and not pattern.fullmatch(text):
        raise ValueError(f"bad {rule}: {text!r}")
    return text


def _defaults(fields: dict[str, Any]) -> dict[str, Any]:
    base = {"last_name": "", "first_name": "", "patronymic": "", "address": "", "language": "ru",
            "company": "", "inn": "", "kpp": ""}
    return base | fields


def _assign(customer: Customer, fields: dict[str, Any]) -> bool:
    changed = False
    for name, value in fields.items():
        if getattr(customer, name) != value:
            setattr(customer, name, value)
            changed = True
    return changed


async def _replace_phones(session: AsyncSession, customer: Customer, current: list[Phone],
                          numbers: list[str]) -> bool:
    have = {p.number for p in current}
    if have == set(numbers):
        return False
    for phone in current:
        if phone.number not in numbers:
            await session.delete(phone)
    session.add_all(Phone(number=n, customer_id=customer.id) for n in numbers if n not in have)
    return True
