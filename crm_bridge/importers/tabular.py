"""Read a CSV or XLSX file into header-mapped rows with their line numbers (blocking: run in a thread).

Memory is bounded by what the file holds, not by what it claims: rows are streamed (a CSV's
encoding is decided a chunk at a time, then it is parsed straight from the file), blank ones are
skipped as they pass, only the layout's columns are kept, and a file of more than ``MAX_ROWS`` data
rows is refused at the first row over it. An XLSX's ``<dimension>`` (``A1:XFD1048576`` from some
exporters) and styled cells far to the right are ignored: openpyxl would pad every row to that
width: measured 1.1 GB and 12-15 s for a 190 KB file of 8 000 customers (now 7 MB and 2 s).
"""

from __future__ import annotations

import codecs
import csv
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm_bridge.errors import ImportFileError
from crm_bridge.importers.bounds import MAX_ROWS
from crm_bridge.importers.columns import Layout, normalize_header
from crm_bridge.importers.report import ImportReport

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
DELIMITERS = (";", ",", "\t")
_CHUNK = 1024 * 1024
# Unpacked size of an XLSX's parts read whole (all but the sheets). MAX_ROWS rows of ten text cells
# take ~40 MB of shared strings XML.
MAX_XLSX_PARTS_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]  # canonical column -> raw cell (str for CSV; str/int/float/datetime for XLSX)


@dataclass(frozen=True)
class Table:
    file: str
    columns: frozenset[str]
    rows: list[Row]


def parse_unique_rows(
    table: Table,
    parse_row: Callable[[Row, frozenset[str]], tuple[str, dict[str, Any]]],
    id_name: str,
    report: ImportReport,
) -> dict[str, tuple[int, dict[str, Any]]]:
    """Parse every row into (id, fields); a bad row or a repeated id is reported, the first row wins.

    Returns id -> (line, fields) for the rows that can be loaded.
    """
    parsed: dict[str, tuple[int, dict[str, Any]]] = {}
    for row in table.rows:
        try:
            key, fields = parse_row(row, table.columns)
        except ValueError as exc:
            report.error(table.file, row.line, str(exc))
            continue
        if key in parsed:
            report.error(table.file, row.line, f"{id_name} {key!r} repeats line {parsed[key][0]}")
            continue
        parsed[key] = (row.line, fields)
    return parsed


def read_table(path: Path, layout: Layout, *, max_rows: int = MAX_ROWS) -> Table:
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    with path.open("rb") as fh:
        magic = fh.read(4)
    if suffix in XLSX_SUFFIXES or (suffix not in CSV_SUFFIXES and magic.startswith(b"PK")):
        return _map(path, _xlsx_rows(path, frozenset(layout.lookup())), layout, max_rows)
    if suffix in CSV_SUFFIXES:
        table = _map(path, _csv_rows(path), layout, max_rows)
        _refuse_swallowed_rows(table, layout)
        return table
    raise ImportFileError(f"{path}: not a CSV or XLSX file (use .csv or .xlsx; .xls must be re-saved)")


def _refuse_swallowed_rows(table: Table, layout: Layout) -> None:
    """A quote left open and closed by a quote on a later line parses as valid CSV: one cell then
    holds the next rows. Ids, names and skus never span lines, so a line break there means that."""
    for row in table.rows:
        for name, cell in row.values.items():
            if name not in layout.multiline and isinstance(cell, str) and ("\n" in cell or "\r" in cell):
                raise ImportFileError(
                    f"{table.file}:{row.line}: unclosed quote (the {name!r} cell runs on over the next line)"
                )


def _map(path: Path, raw_rows: Iterator[tuple[int, Sequence[Any]]], layout: Layout, max_rows: int) -> Table:
    data = ((line, cells) for line, cells in raw_rows if any(not _blank(c) for c in cells))
    first = next(data, None)
    if first is None:
        raise ImportFileError(f"{path}: empty file, no header row")
    header_line, header = first
    lookup = layout.lookup()
    positions: dict[str, int] = {}
    for index, title in enumerate(header):
        canonical = lookup.get(normalize_header(title))
        if canonical is None:
            continue  # extra columns (notes, e-mail…) are ignored
        if canonical in positions:
            raise ImportFileError(f"{path}:{header_line}: two columns mean {canonical!r}")
        positions[canonical] = index
    for group in layout.required:
        if not any(name in positions for name in group):
            wanted = " or ".join(repr(name) for name in group)
            found = ", ".join(repr(str(t)) for t in header if not _blank(t))
            raise ImportFileError(
                f"{path}:{header_line}: missing column {wanted} for {layout.kind} (header: {found})"
            )
    rows: list[Row] = []
    for line, cells in data:
        if len(rows) == max_rows:
            raise ImportFileError(f"{path}:{line}: more than {max_rows} rows in one file (split it)")
        rows.append(Row(line, {name: (cells[i] if i < len(cells) else None) for name, i in positions.items()}))
    return Table(file=str(path), columns=frozenset(positions), rows=rows)


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _csv_encoding(path: Path) -> str:
    """The file's encoding, decided over the whole file a chunk at a time (memory: one chunk)."""
    # utf-8-sig also reads plain UTF-8; cp1251 is what Russian Excel writes as "CSV".
    for encoding in ("utf-8-sig", "cp1251"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    if b"\x00" in chunk:  # the same byte in either encoding
                        raise ImportFileError(f"{path}: binary data in a CSV file")
                    decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise ImportFileError(f"{path}: cannot decode the file as UTF-8 or Windows-1251")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[Any]]]:
    encoding = _csv_encoding(path)
    with path.open(encoding=encoding, newline="") as fh:
        first = next((line for line in fh if line.strip()), "")
        fh.seek(0)
        # The header holds no numbers, so counting separators there is safer than csv.Sniffer on
        # data rows where "1 200,50" would vote for a comma.
        delimiter = max(DELIMITERS, key=first.count) if first else ";"
        yield from _csv_records(path, fh, delimiter)


def _csv_records(path: Path, fh: Iterable[str], delimiter: str) -> Iterator[tuple[int, list[Any]]]:
    # strict: a quote that never closes (or closes in the middle of a later line) is an error
    # instead of silently swallowing the next customers into one cell.
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    start = 1
    width: int | None = None  # cells in the header row
    try:
        for cells in reader:
            if width is None and any(c.strip() for c in cells):
                width = len(cells)
            elif width is not None and reader.line_num > start and len(cells) != width:
                # A quoted cell ran over several lines and the record came out of shape: a quote
                # left open here was closed by one on a later line (legit multi-line cells keep it).
                raise ImportFileError(
                    f"{path}:{start}: unclosed quote (the quoted cell runs on to line {reader.line_num})"
                )
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise ImportFileError(f"{path}:{start}: unclosed quote (it runs to the end of the file)") from exc
        if "expected after" in str(exc):
            raise ImportFileError(
                f"{path}:{start}: unclosed quote or text after a closing quote (up to line {reader.line_num})"
            ) from exc
        raise ImportFileError(f"{path}:{start}: broken CSV ({exc})") from exc


def _refuse_unstreamed_bulk(path: Path) -> None:
    """Only the sheets are streamed; openpyxl reads the other XML parts (shared strings, styles)
    whole. Their unpacked size is in the zip directory: a part inflating to gigabytes (a zip bomb,
    or a broken writer) is refused before a byte of it is read."""
    with zipfile.ZipFile(path) as archive:
        held = sum(info.file_size for info in archive.infolist()
                   if info.filename.endswith((".xml", ".rels")) and not info.filename.startswith("xl/worksheets/"))
    if held > MAX_XLSX_PARTS_BYTES:
        raise ImportFileError(
            f"{path}: the workbook's shared strings and styles unpack to {held // 2**20} MB "
            f"(at most {MAX_XLSX_PARTS_BYTES // 2**20} MB); re-save it or split the file"
        )


def _xlsx_rows(path: Path, titles: frozenset[str]) -> Iterator[tuple[int, Sequence[Any]]]:
    """The first sheet's rows, streamed: up to the header (the first non-blank row) at the width the
    cells have; after it, only up to the header's last column with one of ``titles`` (normalized
    headers of the layout): columns further right are never read."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        _refuse_unstreamed_bulk(path)
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ImportFileError(f"{path}: not a readable XLSX workbook ({exc})") from exc
    try:
        sheet = workbook.worksheets[0]
        # The <dimension> is the writer's claim, not the data's extent: with it openpyxl pads every
        # row to its last column and yields empty rows up to its last row.
        sheet.reset_dimensions()
        width = 0
        for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
            if any(not _blank(c) for c in cells):
                yield number, cells[: max(i for i, c in enumerate(cells, start=1) if not _blank(c))]
                width = max((i for i, c in enumerate(cells, start=1) if normalize_header(c) in titles), default=0)
                break
        if width:
            # A second pass from below the header, never wider than the columns read: a styled
            # cell at XFD (or a note out there) costs nothing. Missing rows come as one shared
            # empty tuple; _map drops them as they pass.
            rows = sheet.iter_rows(min_row=number + 1, max_col=width, values_only=True)
            yield from enumerate(rows, start=number + 1)
    finally:
        workbook.close()  # read-only workbooks keep the file open until closed
