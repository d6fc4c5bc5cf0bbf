"""Upsert the product catalogue by sku. Products missing from the file are left as they are."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge import repositories as repo
from crm_bridge.importers import cells
from crm_bridge.importers.bounds import fit
from crm_bridge.importers.report import ImportReport
from crm_bridge.importers.tabular import Row, Table, parse_unique_rows
from crm_bridge.models import Product


def parse_row(row: Row, columns: frozenset[str]) -> tuple[str, dict[str, Any]]:
    values = row.values
    sku = cells.text(values.get("sku"))
    if not sku:
        raise ValueError("missing sku")
    fit(sku, Product.sku)
    fields: dict[str, Any] = {"price": cells.price(values.get("price"))}
    for name in ("unit", "name"):
        fields[name] = fit(cells.text(values.get(name)), getattr(Product, name))
        if not fields[name]:
            raise ValueError(f"missing {name}")
    for name in ("unit_en", "name_en"):
        if name in columns:
            fields[name] = fit(cells.text(values.get(name)), getattr(Product, name)) or None
    if "active" in columns:
        fields["active"] = cells.flag(values.get("active"))
    return sku, fields


async def load(session: AsyncSession, table: Table, report: ImportReport) -> None:
    parsed = parse_unique_rows(table, parse_row, "sku", report)

    existing = await repo.products_by_sku(session, list(parsed))
    for sku, (_, fields) in parsed.items():
        product = existing.get(sku)
        if product is None:
            session.add(Product(sku=sku, **({"active": True} | fields)))
            report.created += 1
            continue
        changed = False
        for name, value in fields.items():
            if getattr(product, name) != value:
                setattr(product, name, value)
                changed = True
        if changed:
            report.updated += 1
        else:
            report.unchanged += 1
    await session.flush()
