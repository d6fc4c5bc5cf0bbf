"""The call list as a file: ``GET /calls.csv`` and ``GET /calls.xlsx`` (supervisors, admins).

Same filters and sort as ``/calls`` (the page links its current query), at most ``MAX_ROWS`` rows
(newest first by default): a larger selection is cut, the response says so in ``X-Export-Truncated:
<total>`` and the page says so next to the links. Every value is written by ``formats`` (dates in
the business zone, durations m:ss) and the labels the page uses; seconds also as numbers, so a
spreadsheet can sum them.

- CSV for a Russian Excel: UTF-8 with a BOM, ``;`` between cells, a decimal comma, CRLF; streamed
  as the rows come from the database.
- XLSX: openpyxl's write-only workbook (rows go straight to its temporary file, memory stays flat),
  written in a worker thread, then sent.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from crm_bridge.call_search import CallRow, iter_calls, parse_sort, search_calls
from ivr.web.console import formats
from ivr.web.console.auth import current_user
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import outcome_label, reason_text

log = structlog.get_logger("ivr.web.calls")

MAX_ROWS = 100_000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# (header, value of a row for the file); a number stays a number (CSV: decimal comma).
Column = tuple[str, Callable[[CallRow, ZoneInfo], Any]]
COLUMNS: tuple[Column, ...] = (
    ("Начало", lambda r, z: formats.datetime_text(r.call.started_at, z, seconds=True)),
    ("Конец", lambda r, z: formats.datetime_text(r.call.ended_at, z, seconds=True)),
    ("Звонок", lambda r, z: r.call.call_id),
    ("Номер", lambda r, z: r.call.caller_number or ""),
    ("Номер (E.164)", lambda r, z: r.call.normalized_number or ""),
    ("Клиент", lambda r, z: r.call.customer_id or ""),
    ("Имя клиента", lambda r, z: r.customer_name or ""),
    ("Итог", lambda r, z: outcome_label(r.call.outcome)),
    ("Код итога", lambda r, z: r.call.outcome or ""),
    ("Причина", lambda r, z: reason_text(r.call.reason) or ""),
    ("Ожидание", lambda r, z: formats.duration_text(r.call.wait_seconds) if r.call.wait_seconds is not None else ""),
    ("Ожидание, с", lambda r, z: r.call.wait_seconds),
    ("Разговор", lambda r, z: formats.duration_text(r.call.talk_seconds) if r.call.talk_seconds is not None else ""),
    ("Разговор, с", lambda r, z: r.call.talk_seconds),
    ("Оператор", lambda r, z: r.call.operator_name or ""),
    ("Интерфейс оператора", lambda r, z: r.call.operator_interface or ""),
    ("Заказ робота", lambda r, z: r.call.order_id or ""),
    ("Запись", lambda r, z: "есть" if r.call.recording_path else ""),
)
HEADERS = [title for title, _ in COLUMNS]


def row_values(row: CallRow, zone: ZoneInfo) -> list[Any]:
    return [value(row, zone) for _, value in COLUMNS]


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return formats.decimal_comma(round(value, 2))
    return str(value)


def csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerow([csv_cell(v) for v in values])
    return buffer.getvalue().encode("utf-8")


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    """A write-only workbook of ``HEADERS`` + ``rows`` (runs in a worker thread)."""
    from openpyxl import Workbook  # imported here: only the export needs it

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Звонки")
    sheet.freeze_panes = "A2"
    sheet.append(HEADERS)
    for values in rows:
        sheet.append(values)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


async def _selection(request: web.Request) -> tuple[ConsoleDeps, Any, str, int]:
    from ivr.web.console.calls_pages import query_filters  # the page's parser: one reading of the query

    deps: ConsoleDeps = request.app[DEPS_KEY]
    filters, _, _ = query_filters(request.query, deps.timezone)
    sort = parse_sort(request.query.get("sort"))
    total = (await search_calls(deps.store.sessions, filters, limit=1)).total
    return deps, filters, sort, total


def _headers(name: str, total: int) -> dict[str, str]:
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    if total > MAX_ROWS:
        headers["X-Export-Truncated"] = str(total)
    return headers


def _log(request: web.Request, kind: str, total: int) -> None:
    log.info("calls_exported", format=kind, rows=min(total, MAX_ROWS), total=total,
             user=getattr(current_user(request), "username", None))


async def calls_csv(request: web.Request) -> web.StreamResponse:
    deps, filters, sort, total = await _selection(request)
    zone = ZoneInfo(deps.timezone)
    headers = {**_headers("calls.csv", total), "Content-Type": "text/csv; charset=utf-8"}
    if request.method == "HEAD":  # a streamed body must not follow a HEAD answer
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    await response.write("\ufeff".encode() + csv_line(HEADERS))
    chunk: list[bytes] = []
    async for row in iter_calls(deps.store.sessions, filters, sort=sort, limit=MAX_ROWS):
        chunk.append(csv_line(row_values(row, zone)))
        if len(chunk) >= 500:
            await response.write(b"".join(chunk))
            chunk.clear()
    await response.write(b"".join(chunk))
    await response.write_eof()
    _log(request, "csv", total)
    return response


async def calls_xlsx(request: web.Request) -> web.Response:
    deps, filters, sort, total = await _selection(request)
    zone = ZoneInfo(deps.timezone)
    rows = [row_values(row, zone) async for row in iter_calls(deps.store.sessions, filters, sort=sort, limit=MAX_ROWS)]
    body = await asyncio.to_thread(xlsx_bytes, rows)
    _log(request, "xlsx", total)
    return web.Response(body=body, content_type=XLSX_TYPE, headers=_headers("calls.xlsx", total))
