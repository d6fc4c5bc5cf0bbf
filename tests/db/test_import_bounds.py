"""Values the database would refuse are reported as file:line before any write; a broken CSV quote
refuses the file. Real CSV/XLSX files, both backends; nothing partial or duplicated lands."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_bridge.errors import ImportFileError
from crm_bridge.importers import import_file
from crm_bridge.importers.bounds import MAX_QUANTITY, MONEY_MAX
from crm_bridge.models import Customer, Order, OrderLine, Product
from crm_bridge.services import CrmStore
from tests.db.test_importers import write, xlsx

LONG_NAME = "Я" * 101  # customers.last_name is String(100)
LONG_SKU = "S" * 65  # products.sku is String(64)

# (kind, bad data row, expected words in the reason); the file is header + good row + bad row + good row.
HEADERS = {
    "customers": "customer_id,last_name,first_name,phones,address",
    "products": "sku,price,unit,name,name_en",
    "orders": "order_id,customer_id,ordered_at,sku,quantity,price",
}
GOOD = {
    "customers": ("G1,Иванов,Алексей,89161234567,Москва", "G2,Петров,Пётр,89031112233,Москва"),
    "products": ("W20,350,бутылка,воды 20 л,water", "W5,150,бутылка,воды 5 л,water"),
    "orders": ("H1,C1,2026-10-01,W19,2,", "H2,C1,2026-10-02,W19,3,"),
}
CASES = [
    ("customers", f"B1,{LONG_NAME},Иван,89161112233,", "last_name is too long (101 characters, at most 100)"),
    ("customers", f"{'C' * 65},Сидоров,Иван,89161112233,", "customer_id is too long"),
    ("customers", f"B2,Сидоров,{'И' * 101},89161112233,", "first_name is too long"),
    ("customers", "B3,Сидоров,Иван,12345,", "unparseable phone"),
    ("products", f"{LONG_SKU},350,бутылка,воды,", "sku is too long"),
    ("products", "P1,1e30,бутылка,воды,", f"at most {MONEY_MAX}"),
    ("products", "P2,10000000000,бутылка,воды,", "too large"),
    ("products", f"P3,1,{'б' * 51},воды,", "unit is too long"),
    ("products", f"P4,1,бутылка,{'в' * 201},", "name is too long"),
    ("products", f"P5,1,бутылка,воды,{'w' * 201}", "name_en is too long"),
    ("orders", f"{'O' * 65},C1,2026-10-01,W19,1,", "order_id is too long"),
    ("orders", "O1,C1,2026-10-01,W19,10000000,", f"at most {MAX_QUANTITY}"),
    ("orders", "O2,C1,2026-10-01,W19,1e30,", "too large"),
    ("orders", "O3,C1,2026-10-01,W19,99999999999999999999999999999999,", "too large"),
    ("orders", "O4,C1,2026-10-01,W19,0,", "positive whole number"),
    ("orders", "O5,C1,2026-10-01,W19,-3,", "positive whole number"),
    ("orders", "O6,C1,2026-10-01,W19,2,1e30", "too large"),
    ("orders", "O7,C1,2026-10-01,W19,100000,9999999999", "line amount"),  # fits alone, not × 100 000
    ("orders", "O8,C1,0001-01-01,W19,1,", "out of range"),
    ("orders", "O9,C1,9999-12-31T23:59,W19,1,", "out of range"),
    ("orders", "O10,C1,1999-12-31T12:00,W19,1,", "out of range"),
    ("orders", f"O11,C1,2026-10-01,{LONG_SKU},1,", "sku is too long"),
]


async def _base(store: CrmStore, tmp_path: Path) -> None:
    """The catalogue and customer the order files refer to."""
    await import_file(store, "products", write(tmp_path, "base-p.csv", "sku,price,unit,name\nW19,350,бутылка,воды\n"))
    await import_file(store, "customers", write(tmp_path, "base-c.csv", "customer_id,full_name\nC1,Иванов Иван\n"))


async def _count(store: CrmStore, model: type) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(("kind", "bad", "reason"), CASES)
async def test_values_the_database_would_refuse_are_reported_by_line(
    store: CrmStore, tmp_path: Path, kind: str, bad: str, reason: str
) -> None:
    await _base(store, tmp_path)
    first, last = GOOD[kind]
    path = write(tmp_path, f"{kind}.csv", "\n".join([HEADERS[kind], first, bad, last]) + "\n")
    model = {"customers": Customer, "products": Product, "orders": Order}[kind]
    before = await _count(store, model)

    report = await import_file(store, kind, path)

    assert [(e.line, reason in e.reason) for e in report.errors] == [(3, True)], report.errors
    assert str(report.errors[0]).startswith(f"{path}:3: ")
    assert report.created == 2  # the good rows around it load (the file's policy: good rows load)
    assert await _count(store, model) == before + 2
    again = await import_file(store, kind, path)  # nothing doubles on a re-run
    assert (again.created, again.unchanged, len(again.errors)) == (0, 2, 1)
    assert await _count(store, model) == before + 2


async def test_an_order_total_past_the_money_column_refuses_that_order_only(store: CrmStore, tmp_path: Path) -> None:
    await _base(store, tmp_path)
    # Two lines of 6e9 each: both fit, the 1.2e10 total does not.
    rows = ["order_id,customer_id,ordered_at,sku,quantity,price", "BIG,C1,2026-10-01,W19,1,6000000000",
            "BIG,C1,2026-10-01,W19,1,6000000000", "OK,C1,2026-10-02,W19,1,"]
    report = await import_file(store, "orders", write(tmp_path, "o.csv", "\n".join(rows) + "\n"))
    assert [(e.line, "'BIG' total" in e.reason) for e in report.errors] == [(2, True)]
    assert report.created == 1 and await _count(store, Order) == 1 and await _count(store, OrderLine) == 1


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        # The quote opened on line 3 never closes: Петров would be swallowed into Иванов's name.
        ('customer_id,full_name,phones\nC1,Сидоров Сидор,89161112233\nC2,"Иванов Иван,89161234567\n'
         "C3,Петров Пётр,89031112233\n", 3, "unclosed quote (it runs to the end of the file)"),
        # ... or is closed by the next line's opening quote.
        ('customer_id,full_name,phones\nC1,Сидоров Сидор,89161112233\nC2,"Иванов Иван,89161234567\n'
         'C3,"Петров Пётр",89031112233\n', 3, "unclosed quote"),
        # ... or by a quote later on that happens to end a cell.
        ('customer_id,full_name,phones\nC2,"Иванов Иван,89161234567\nC3,Петров Пётр",89031112233\n',
         2, "unclosed quote"),
    ],
)
async def test_an_unclosed_quote_refuses_the_file(store: CrmStore, tmp_path: Path, content: str, line: int,
                                                  words: str) -> None:
    path = write(tmp_path, "c.csv", content)
    with pytest.raises(ImportFileError) as caught:
        await import_file(store, "customers", path)
    assert str(caught.value).startswith(f"{path}:{line}: {words}")
    assert await _count(store, Customer) == 0


async def test_a_legit_multiline_quoted_cell_still_loads(store: CrmStore, tmp_path: Path) -> None:
    content = ('customer_id,full_name,phones,address\nC1,Иванов Иван,"89161234567\n89031112233","Москва,\n'
               'ул. Садовая, 5"\nC2,Петров Пётр,89035554433,Тверь\n')
    report = await import_file(store, "customers", write(tmp_path, "c.csv", content))
    assert report.ok and report.created == 2, report.errors
    card = await store.get_customer_card("C1")
    assert card is not None and card.customer.phones == ("+79161234567", "+79031112233")


async def test_xlsx_cells_get_the_same_checks(store: CrmStore, tmp_path: Path) -> None:
    await _base(store, tmp_path)
    products = xlsx(tmp_path, "p.xlsx", [
        ["sku", "price", "unit", "name"],
        ["X1", 1e30, "бутылка", "воды"],
        [LONG_SKU, 10, "бутылка", "воды"],
        ["X2", 99.5, "бутылка", "воды"],
    ])
    report = await import_file(store, "products", products)
    assert [e.line for e in report.errors] == [2, 3] and report.created == 1
    orders = xlsx(tmp_path, "o.xlsx", [
        ["order_id", "customer_id", "ordered_at", "sku", "quantity"],
        ["X-1", "C1", "2026-10-01", "W19", 10_000_000],
        ["X-2", "C1", "2026-10-01", "W19", 2.5],
        ["X-3", "C1", "2026-10-01", "W19", 4.0],
    ])
    report = await import_file(store, "orders", orders)
    assert [e.line for e in report.errors] == [2, 3] and report.created == 1
    assert "too large" in report.errors[0].reason
    assert await _count(store, Order) == 1 and await _count(store, OrderLine) == 1
