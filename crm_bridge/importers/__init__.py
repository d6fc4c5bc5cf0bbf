"""CSV/XLSX importers for customers, products and order history.

``import_file(store_or_sessions, kind, path)`` loads one file in one transaction: good rows load,
bad rows are reported with file and line, and re-importing the same file changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.db import SQLITE_BEGIN
from crm_bridge.deals import Pipeline
from crm_bridge.errors import ImportFileError
from crm_bridge.importers import customers, orders, products
from crm_bridge.importers.columns import LAYOUTS
from crm_bridge.importers.report import ImportReport, RowError
from crm_bridge.importers.tabular import read_table

log = structlog.get_logger(__name__)

ImportKind = Literal["customers", "products", "orders"]
DEFAULT_TIMEZONE = "Europe/Moscow"

__all__ = ["ImportFileError", "ImportKind", "ImportReport", "RowError", "import_file"]


async def import_file(
    store_or_sessions: Any,
    kind: ImportKind,
    path: str | os.PathLike[str],
    *,
    timezone: str | None = None,
) -> ImportReport:
    """Import one CSV/XLSX file of ``kind``; raises ImportFileError when the file is unusable as a whole.

    ``store_or_sessions`` is a CrmStore (its config gives the timezone of naive order dates) or an
    async_sessionmaker. Naive dates in order files are wall-clock time in ``timezone``.
    """
    sessions, zone_name = _unpack(store_or_sessions)
    config = getattr(store_or_sessions, "config", None)
    pipeline = getattr(config, "deals", None) or Pipeline()
    layout = LAYOUTS.get(kind)
    if layout is None:
        raise ImportFileError(f"unknown import kind {kind!r} (customers, products or orders)")
    zone = ZoneInfo(timezone or zone_name)
    table = await asyncio.to_thread(read_table, Path(path), layout)  # openpyxl/csv block
    report = ImportReport(kind=kind, files=[table.file])
    async with sessions() as session:
        await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
        try:
            if kind == "customers":
                await customers.load(session, table, report)
            elif kind == "products":
                await products.load(session, table, report)
            else:
                await orders.load(session, table, report, zone, pipeline)
            await session.commit()
        except (DataError, IntegrityError) as exc:
            # Every cell is checked against the columns first (importers.bounds); reaching here means
            # a check is missing. The transaction rolls back: nothing of the file lands.
            log.error("import_refused_by_database", kind=kind, file=table.file, error=str(exc.orig))
            raise ImportFileError(f"{table.file}: the database refused the file, nothing was imported "
                                  f"({type(exc.orig).__name__}: {exc.orig})") from exc
    log.info("import_finished", kind=kind, file=table.file, rows=len(table.rows), created=report.created,
             updated=report.updated, unchanged=report.unchanged, errors=len(report.errors))
    return report


def _unpack(store_or_sessions: Any) -> tuple[async_sessionmaker[AsyncSession], str]:
    sessions = getattr(store_or_sessions, "sessions", None)
    if sessions is not None:  # a CrmStore
        return sessions, getattr(store_or_sessions.config, "timezone", DEFAULT_TIMEZONE)
    return store_or_sessions, DEFAULT_TIMEZONE
