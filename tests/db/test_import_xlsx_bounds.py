"""Imports read what a file holds, not what it claims (issue 9, point 7): an XLSX whose <dimension>
says A1:XFD… and whose styled cells sit far to the right streams in a few MB; rows past MAX_ROWS and
parts that would unpack to gigabytes refuse the file with a clear error. Real files, both backends."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from crm_bridge.errors import ImportFileError
from crm_bridge.importers import import_file
from crm_bridge.importers.bounds import MAX_ROWS
from crm_bridge.importers.columns import CUSTOMERS
from crm_bridge.importers.tabular import MAX_XLSX_PARTS_BYTES, read_table
from crm_bridge.services import CrmStore
from tests.db.test_importers import write, xlsx

ROWS = 1000
FAR_ROW = 20_000  # a styled, empty row far below the data (a "format the whole column" leftover)
HEADER = ["customer_id", "last_name", "first_name", "phones", "address"]


def customer(i: int) -> list[object]:
    return [f"C{i}", "Иванов", f"Алексей{i}", f"8916{i:07d}", f"Москва, д. {i}"]


def far_styled_cell(row: re.Match[str]) -> str:
    number = int(row.group(2))
    if number == 1:  # a note in the header's last column: no layout column, never read below
        return row.group(1) + '<c r="XFD1" t="inlineStr"><is><t>заметки</t></is></c></row>'
    return row.group(1) + (f'<c r="XFD{number}" s="0"/>' if number % 100 == 1 else "") + "</row>"


def whole_grid_xlsx(tmp_path: Path, rows: int = ROWS) -> Path:
    """The workbook openpyxl writes, with the sheet XML patched as exporters leave it: a dimension of
    every column, a note at XFD in the header, a styled empty cell there in every 100th row, a far
    styled row."""
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for i in range(rows):
        sheet.append(customer(i))
    buffer = io.BytesIO()
    book.save(buffer)
    path = tmp_path / "whole-grid.xlsx"
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = re.sub(r'<dimension ref="[^"]*" ?/>', f'<dimension ref="A1:XFD{rows + 1}"/>', data.decode())
                text = re.sub(r'(<row r="(\d+)"[^>]*>.*?)</row>', far_styled_cell, text)
                text = text.replace("</sheetData>", f'<row r="{FAR_ROW}"><c r="XFD{FAR_ROW}" s="0"/></row></sheetData>')
                assert text.count('r="XFD') > rows // 100
                data = text.encode()
            out.writestr(item, data)
    return path


def test_an_xlsx_claiming_every_column_is_read_in_a_few_megabytes(tmp_path: Path) -> None:
    """Before: openpyxl padded every row to 16 384 cells (8 000 rows: 1.1 GB); the 1 000 rows here
    peaked at 126 MB (measured; 2 MB now)."""
    path = whole_grid_xlsx(tmp_path)
    tracemalloc.start()
    try:
        table = read_table(path, CUSTOMERS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB"  # measured 2 MB
    assert len(table.rows) == ROWS
    assert table.rows[0].line == 2 and table.rows[-1].line == ROWS + 1
    assert table.rows[-1].values == dict(zip(HEADER, customer(ROWS - 1), strict=True))


async def test_the_whole_grid_xlsx_imports_every_customer(store: CrmStore, tmp_path: Path) -> None:
    report = await import_file(store, "customers", whole_grid_xlsx(tmp_path, rows=300))
    assert report.ok, report.errors
    assert report.created == 300
    found = await store.lookup_caller("89160000299")
    assert found.customer is not None and found.customer.customer_id == "C299"


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_rows_past_the_limit_refuse_the_file_at_the_first_row_over_it(tmp_path: Path, kind: str) -> None:
    rows = [HEADER, customer(1), [], customer(2), customer(3), customer(4)]
    if kind == "csv":
        path = write(tmp_path, "c.csv", "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    else:
        path = xlsx(tmp_path, "c.xlsx", rows)
    with pytest.raises(ImportFileError, match=rf"c\.{kind}:6: more than 3 rows in one file \(split it\)"):
        read_table(path, CUSTOMERS, max_rows=3)
    assert len(read_table(path, CUSTOMERS, max_rows=4).rows) == 4  # blank rows never count
    assert MAX_ROWS == 100_000  # the default (README: crm_bridge imports)


def test_an_xlsx_whose_shared_strings_would_unpack_past_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """Shared strings are read whole by openpyxl: a zip bomb there would be one too."""
    plain = xlsx(tmp_path, "plain.xlsx", [HEADER, customer(1)])
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            if item.filename != "xl/sharedStrings.xml":
                out.writestr(item, source.read(item.filename))
        with out.open("xl/sharedStrings.xml", "w") as member:
            chunk = b"<si><t>" + b"x" * (1024 * 1024 - 15) + b"</t></si>"
            for _ in range(MAX_XLSX_PARTS_BYTES // len(chunk) + 1):
                member.write(chunk)
    assert path.stat().st_size < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ImportFileError, match=r"bomb\.xlsx: .* unpack to 6\d MB \(at most 64 MB\)"):
            read_table(path, CUSTOMERS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("customer_id,last_name\nC1,Ив\x00анов\n".encode(), r"c\.csv: binary data in a CSV file"),
        (b"customer_id,last_name\nC1,\x98\xff\n", r"c\.csv: cannot decode the file as UTF-8 or Windows-1251"),
    ],
)
def test_a_csv_decided_chunk_by_chunk_still_refuses_binary_and_undecodable_files(tmp_path: Path, content, message):
    path = tmp_path / "c.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        read_table(path, CUSTOMERS)


def test_a_cp1251_csv_split_across_decode_chunks_reads_whole(tmp_path: Path) -> None:
    """The encoding is decided over every chunk: a UTF-8 file whose only non-ASCII bytes come after
    the first megabyte must not be taken for UTF-8 when they are cp1251."""
    filler = "".join(f"C{i},Ivanov\n" for i in range(120_000))  # > 1 MB of ASCII
    path = tmp_path / "c.csv"
    path.write_bytes(("customer_id,last_name\n" + filler + "X1,Иванов\n").encode("cp1251"))
    table = read_table(path, CUSTOMERS, max_rows=200_000)
    assert table.rows[-1].values == {"customer_id": "X1", "last_name": "Иванов"}
