from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from crm_bridge.demo import load_demo_data
from crm_bridge.errors import ImportFileError
from crm_bridge.importers import ImportReport, import_file
from crm_bridge.services import CrmStore

PRODUCTS_CSV = """\
sku,price,unit,name,unit_en,name_en
W19,350.00,бутылка,воды 19 л,bottle,"of water, 19 l"
W5,150,бутылка,воды 5 л,,
"""

CUSTOMERS_CSV = """\
customer_id,last_name,first_name,patronymic,phones,address,language
C1,Иванов,Алексей,Сергеевич,8 916 123-45-67,"Москва, ул. Садовая, 5",ru
C2,Smith,John,,"+7 926 555-44-33, +7 495 765-43-21",Moscow,en
"""

ORDERS_CSV = """\
order_id,customer_id,ordered_at,sku,quantity
H1,C1,2026-10-19T09:45:00,W19,4
H2,C2,27.10.2026 10:00,W19,2
H2,C2,27.10.2026 10:00,W5,1
"""


def write(tmp_path: Path, name: str, content: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding=encoding)
    return path


def xlsx(tmp_path: Path, name: str, rows: list[list[object]]) -> Path:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    book.save(path)
    return path


def counts(report: ImportReport) -> tuple[int, int, int]:
    return report.created, report.updated, report.unchanged


async def load_basics(store: CrmStore, tmp_path: Path) -> None:
    for kind, content in (("products", PRODUCTS_CSV), ("customers", CUSTOMERS_CSV), ("orders", ORDERS_CSV)):
        report = await import_file(store, kind, write(tmp_path, f"{kind}.csv", content))
        assert report.ok, report.errors


async def test_csv_imports_load_and_reimport_changes_nothing(store: CrmStore, tmp_path: Path) -> None:
    await load_basics(store, tmp_path)
    found = await store.lookup_caller("+79161234567")
    assert found.status == "found"
    assert found.customer is not None and found.customer.address == "Москва, ул. Садовая, 5"
    assert found.last_order is not None
    assert [(x.sku, x.quantity, x.amount) for x in found.last_order.lines] == [("W19", 4, Decimal("1400.00"))]
    # Naive dates are Moscow wall-clock time.
    assert found.last_order.ordered_at == datetime(2026, 10, 19, 6, 45, tzinfo=UTC)
    assert found.last_order.source == "import" and found.last_order.invoice is None
    smith = await store.get_customer_card("C2")
    assert smith is not None
    assert smith.customer.language == "en"
    assert smith.customer.phones == ("+79265554433", "+74957654321")
    assert [x.sku for x in smith.orders[0].lines] == ["W19", "W5"]
    assert smith.orders[0].total == Decimal("850.00")
    assert smith.orders[0].ordered_at == datetime(2026, 10, 27, 7, 0, tzinfo=UTC)

    for kind, total in (("products", 2), ("customers", 2), ("orders", 2)):
        again = await import_file(store, kind, tmp_path / f"{kind}.csv")
        assert again.ok and counts(again) == (0, 0, total), kind


async def test_reimport_reports_updates(store: CrmStore, tmp_path: Path) -> None:
    await load_basics(store, tmp_path)
    changed = CUSTOMERS_CSV.replace("8 916 123-45-67", "8 916 123-45-67; 8 903 000-00-01").replace(
        "Moscow", "London")
    report = await import_file(store, "customers", write(tmp_path, "customers.csv", changed))
    assert counts(report) == (0, 2, 0)
    card = await store.get_customer_card("C1")
    assert card is not None and card.customer.phones == ("+79161234567", "+79030000001")
    orders = ORDERS_CSV.replace("H1,C1,2026-10-19T09:45:00,W19,4", "H1,C1,2026-10-19T09:45:00,W19,5")
    report = await import_file(store, "orders", write(tmp_path, "orders.csv", orders))
    assert counts(report) == (0, 1, 1)
    last = (await store.lookup_caller("+79161234567")).last_order
    assert last is not None and last.lines[0].quantity == 5 and last.total == Decimal("1750.00")


async def test_russian_headers_semicolons_bom_and_full_name(store: CrmStore, tmp_path: Path) -> None:
    products = "Артикул;Цена;Единица;Наименование\nW19;1 200,50;бутылка;воды 19 л\nW5;1200.50;бутылка;воды 5 л\n"
    report = await import_file(store, "products", write(tmp_path, "p.csv", products, "utf-8-sig"))
    assert report.ok and report.created == 2
    assert {p.sku: p.price for p in await store.list_products()} == {
        "W19": Decimal("1200.50"), "W5": Decimal("1200.50")}
    customers = (
        "Код клиента; ФИО ;Телефоны;АДРЕС;Язык\n"
        "K-1;Иванов Алексей Сергеевич;+7 916 123-45-67;Москва;\n"
        "K-2;Мамедов Рашид Ахмед оглы;8 903 111 22 33;Москва;русский\n"
        "K-3;Петров Пётр;89035554433;;\n"
    )
    report = await import_file(store, "customers", write(tmp_path, "c.csv", customers, "utf-8-sig"))
    assert report.ok, report.errors
    ivanov = await store.get_customer_card("K-1")
    assert ivanov is not None
    c = ivanov.customer
    assert (c.last_name, c.first_name, c.patronymic, c.language) == ("Иванов", "Алексей", "Сергеевич", "ru")
    mamedov = await store.get_customer_card("K-2")
    assert mamedov is not None and mamedov.customer.patronymic == "Ахмед оглы"
    petrov = await store.get_customer_card("K-3")
    assert petrov is not None and (petrov.customer.first_name, petrov.customer.patronymic) == ("Пётр", "")
    orders = "Номер заказа;Клиент;Дата;Артикул;Количество\nZ-1;K-1;27.11.2026;W19;2\n"
    report = await import_file(store, "orders", write(tmp_path, "o.csv", orders))
    assert report.ok, report.errors
    card = await store.get_customer_card("K-1")
    assert card is not None and card.orders[0].ordered_at == datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


async def test_company_customers_with_inn_and_kpp(store: CrmStore, tmp_path: Path) -> None:
    customers = (
        "Код клиента;ФИО;Телефоны;Организация;ИНН;КПП\n"
        "K-1;Петрова Мария Ивановна;+7 903 111 22 33;ООО «Ромашка»;7705 123456;770501001\n"
        "K-2;Морозов Игорь Николаевич;+7 963 765 43 21;ИП Морозов И. Н.;773412345678;\n"
        "K-3;Иванов Алексей;+7 916 123 45 67;;;\n"
        "K-4;Сидоров Пётр;+7 916 000 00 01;ООО «Ошибка»;77051234;770501001\n"
        "K-5;Сидоров Иван;+7 916 000 00 02;ООО «Ошибка»;7705123456;77-05-01\n"
    )
    report = await import_file(store, "customers", write(tmp_path, "c.csv", customers))
    assert report.created == 3
    assert [(e.line, e.reason) for e in report.errors] == [
        (5, "bad ИНН: 10 digits (company) or 12 (person): '77051234'"),
        (6, "bad КПП: 9 characters: '77-05-01'"),
    ]
    people = {cid: (await store.get_customer_card(cid)).customer for cid in ("K-1", "K-2", "K-3")}
    assert [(c.company, c.inn, c.kpp) for c in people.values()] == [
        ("ООО «Ромашка»", "7705123456", "770501001"),
        ("ИП Морозов И. Н.", "773412345678", ""),
        ("", "", ""),
    ]
    # XLSX: ИНН typed as a number
    book = xlsx(tmp_path, "c.xlsx", [["ID", "ФИО", "Компания", "ИНН", "КПП"],
                                     ["K-1", "Петрова Мария Ивановна", "ООО «Ромашка»", 7705123457, "7705AB001"]])
    assert counts(await import_file(store, "customers", book)) == (0, 1, 0)
    k1 = (await store.get_customer_card("K-1")).customer
    assert (k1.inn, k1.kpp, k1.phones) == ("7705123457", "7705AB001", ("+79031112233",))


async def test_windows_1251_csv_is_read(store: CrmStore, tmp_path: Path) -> None:
    products = "Артикул;Цена;Единица;Наименование\nW19;350;бутылка;воды 19 л\n"
    report = await import_file(store, "products", write(tmp_path, "p.csv", products, "cp1251"))
    assert report.ok and report.created == 1
    assert (await store.price_lines([("W19", 1)]))[0].unit == "бутылка"


async def test_bad_rows_are_reported_with_line_numbers_and_good_rows_load(
    store: CrmStore, tmp_path: Path
) -> None:
    products = (
        "sku,price,unit,name\n"
        "W19,350,бутылка,воды 19 л\n"
        ",100,штука,без артикула\n"
        "W5,дорого,бутылка,воды 5 л\n"
        "CUPS,99.90,упаковка,стаканчиков\n"
    )
    report = await import_file(store, "products", write(tmp_path, "p.csv", products))
    assert report.created == 2
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "missing sku"), (4, "unparseable price 'дорого'")]
    assert report.errors[0].file.endswith("p.csv") and not report.ok

    customers = (
        "customer_id,full_name,phones\n"
        "C1,Иванов Алексей Сергеевич,89161234567\n"
        "C2,Петров Пётр,12345\n"
        ",Безымянный,89031112233\n"
        "C3,Сидоров Сидор,89035550000\n"
        "C1,Иванов Алексей,89161234567\n"
    )
    report = await import_file(store, "customers", write(tmp_path, "c.csv", customers))
    assert report.created == 2
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "unparseable phone '12345'"), (4, "missing customer_id"), (6, "customer_id 'C1' repeats line 2")]

    orders = (
        "order_id,customer_id,ordered_at,sku,quantity\n"
        "O1,C1,2026-10-01,W19,2\n"
        "O2,C1,not a date,W19,1\n"
        "O3,NOBODY,2026-10-01,W19,1\n"
        "O4,C3,2026-10-01,NOPE,1\n"
        "O5,C3,2026-10-02,W19,1.5\n"
        "O6,C3,2026-10-03,W19,1\n"
        "O6,C3,2026-10-03,CUPS,zero\n"
        "O7,C3,2026-10-04,CUPS,3\n"
    )
    report = await import_file(store, "orders", write(tmp_path, "o.csv", orders))
    assert report.created == 2  # O1 and O7
    lines = {e.line: e.reason for e in report.errors}
    assert set(lines) == {3, 4, 5, 6, 7, 8}
    assert "unparseable date" in lines[3]
    assert lines[4] == "unknown customer 'NOBODY'"
    assert lines[5] == "unknown sku 'NOPE'"
    assert "positive whole number" in lines[6]
    assert "unparseable quantity" in lines[8] and "O6" in lines[7]  # the whole order O6 is refused
    card = await store.get_customer_card("C3")
    assert card is not None and [o.order_id for o in card.orders] == ["O7"]


async def test_xlsx_import_with_typed_cells(store: CrmStore, tmp_path: Path) -> None:
    products = xlsx(tmp_path, "p.xlsx", [
        ["Артикул", "Цена", "Единица", "Наименование", "Активен"],
        ["W19", 350, "бутылка", "воды 19 л", "да"],
        ["W5", "1 200,50", "бутылка", "воды 5 л", "нет"],
        [None, None, None, None, None],
        ["BAD", "x", "штука", "плохая цена", "да"],
    ])
    report = await import_file(store, "products", products)
    assert report.created == 2 and [(e.line, e.reason) for e in report.errors] == [
        (5, "unparseable price 'x'")]
    assert [p.sku for p in await store.list_products()] == ["W19"]  # W5 inactive
    customers = xlsx(tmp_path, "c.xlsx", [
        ["ID", "Фамилия", "Имя", "Отчество", "Телефон"],
        [1001, "Иванов", "Алексей", "Сергеевич", 79161234567],
    ])
    assert (await import_file(store, "customers", customers)).ok
    orders = xlsx(tmp_path, "o.xlsx", [
        ["Заказ", "Клиент", "Дата", "Артикул", "Количество", "Цена"],
        [5001, 1001, datetime(2026, 10, 1, 12, 0), "W19", 4.0, 300],
    ])
    report = await import_file(store, "orders", orders)
    assert report.ok, report.errors
    found = await store.lookup_caller("89161234567")
    assert found.customer is not None and found.customer.customer_id == "1001"
    assert found.last_order is not None and found.last_order.order_id == "5001"
    assert found.last_order.ordered_at == datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    assert (found.last_order.lines[0].quantity, found.last_order.lines[0].unit_price) == (4, Decimal("300.00"))
    again = await import_file(store, "orders", orders)
    assert counts(again) == (0, 0, 1)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("data.json", '{"a": 1}', "not a CSV or XLSX"),
        ("empty.csv", "\n\n", "no header"),
        ("cols.csv", "sku,unit,name\nW19,бутылка,воды\n", "missing column 'price'"),
        ("fake.xlsx", "not a zip", "not a readable XLSX"),
    ],
)
async def test_unreadable_files_raise(store: CrmStore, tmp_path: Path, name, content, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ImportFileError, match=message):
        await import_file(store, "products", path)


async def test_demo_data_loads_twice_without_change(store: CrmStore) -> None:
    first = await load_demo_data(store.sessions)
    assert first.ok, first.errors
    assert first.created == 5 + 8 + 9
    second = await load_demo_data(store)
    assert second.ok and counts(second) == (0, 0, first.created)

    ivanov = await store.lookup_caller("8 916 123-45-67")
    assert ivanov.status == "found" and ivanov.customer is not None
    assert (ivanov.customer.first_name, ivanov.customer.patronymic) == ("Алексей", "Сергеевич")
    assert ivanov.last_order is not None
    (line,) = ivanov.last_order.lines
    assert (line.quantity, line.unit, line.name) == (4, "бутылка", "воды «Жемчужная роса» 19 л")
    assert (await store.lookup_caller("+74951234567")).status == "shared"
    petrova = await store.lookup_caller("+79031112233")
    assert petrova.last_order is not None and len(petrova.last_order.lines) == 2
    smith = await store.lookup_caller("+79265554433")
    assert smith.customer is not None and smith.customer.language == "en"
    assert smith.last_order is not None and smith.last_order.lines[0].unit_en == "bottle"
    sokolova = await store.lookup_caller("+79857778899")
    assert sokolova.status == "found" and sokolova.last_order is None
    placed = await store.place_order(idempotency_key="demo", customer_id="C001",
                                     lines=[(line.sku, line.quantity)], source="ivr")
    assert placed.order.order_id == "A-1001" and placed.invoice.total == Decimal("1400.00")
