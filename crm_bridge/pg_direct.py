"""The call path's statements on PostgreSQL, run on the pooled connection's asyncpg driver (issue 7).

Measured on this machine: a statement through SQLAlchemy Core costs ~150 µs of CPU (cache key,
execution context, greenlet hop, result rows) against ~20 µs for the same statement prepared in
asyncpg; a call runs three of them (who is calling, what the order needs, the order itself), which
made SQLAlchemy a fifth of a call's CPU. The statements stay defined once, as SQLAlchemy constructs
in ``crm_bridge.repositories``: :class:`DirectStatement` compiles one to PostgreSQL's text once, and
runs it on the driver connection under a connection checked out of the engine's own pool (one pool,
one lifecycle), where asyncpg prepares it once per connection (its statement cache).

Rows read as they do through Core: attribute access by column label, and the column types' own
result conversions (``UtcDateTime``, ``Money``) applied; bind conversions likewise. The engine's
``before_cursor_execute`` listeners are told of each statement, so statement counters and query
logging hooked on the engine see these as they see the rest.

Errors: a dead connection is handed back to SQLAlchemy to judge (one ``SELECT 1`` on the same
connection): it recognises the disconnect, invalidates the pool as it would have for its own
statement, and the store sees the usual ``DBAPIError`` with ``connection_invalidated`` (retry once).
Any other driver error becomes ``StoreUnavailable`` with the server's one-line message.
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_bridge.errors import StoreUnavailable

log = structlog.get_logger(__name__)

_DIALECT = asyncpg_dialect()
Converter = Callable[[Any], Any]


class DirectStatement:
    """One SQLAlchemy statement compiled for asyncpg: ``await s.fetch(conn, params)`` -> rows,
    ``await s.executemany(conn, raw, rows)`` for a batch (an INSERT of the given ``column_keys``).

    Compiled with the connection's own dialect on first use (its JSON serializer is the engine's);
    scalar column defaults (``default=0``) are filled in as SQLAlchemy would.
    """

    def __init__(self, statement: Any, *, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._dialect: Any = None
        self.sql = ""
        self._names: tuple[str, ...] = ()
        self._defaults: dict[str, Any] = {}
        self._binds: dict[str, Converter] = {}
        columns = getattr(statement, "selected_columns", None)
        self._columns = tuple(columns) if columns is not None else ()
        self._results: tuple[Converter | None, ...] = ()
        self._row: type[tuple[Any, ...]] | None = None
        self._compile(_DIALECT)

    def _compile(self, dialect: Any) -> None:
        if self._column_keys is not None:
            compiled = self._statement.compile(dialect=dialect, column_keys=self._column_keys, for_executemany=True)
        else:
            compiled = self._statement.compile(dialect=dialect)
        self._dialect = dialect
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        self._defaults = dict(compiled.params)  # literal binds such as a LIMIT 1
        for column in getattr(compiled, "insert_prefetch", ()):
            default = column.default
            if default is None or not default.is_scalar:
                raise ValueError(f"{column}: only scalar Python-side defaults are supported here")
            self._defaults[column.key] = default.arg
        self._binds = {}
        for name in self._names:
            convert = compiled.binds[name].type.bind_processor(dialect)
            if convert is not None:
                self._binds[name] = convert
        self._results = tuple(c.type.result_processor(dialect, None) for c in self._columns)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name in self._names:
            value = params[name] if name in params else self._defaults[name]
            convert = self._binds.get(name)
            out.append(value if convert is None or value is None else convert(value))
        return out

    def _for(self, conn: AsyncConnection) -> None:
        if conn.dialect is not self._dialect:
            self._compile(conn.dialect)

    def _announce(self, conn: AsyncConnection, args: Any, many: bool) -> None:
        sync = conn.sync_connection
        if sync is not None and sync.dispatch.before_cursor_execute:
            # Statement counters and query logging hooked on the engine still see this statement.
            sync.dispatch.before_cursor_execute(sync, None, self.sql, args, None, many)

    async def fetch(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        """Rows of one execution; driver errors become the store's (see the module doc)."""
        self._for(conn)
        raw = await driver(conn)
        args = self.args(params)
        self._announce(conn, args, False)
        try:
            records = await raw.fetch(self.sql, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise await _judged(conn, exc) from exc
        return self._rows(records)

    async def executemany(
        self, conn: AsyncConnection, raw: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """One pipelined execution per row on ``raw`` (inside the caller's transaction). Driver
        errors are left to the caller: a batch tells a refused value from a lost database."""
        self._for(conn)
        args = [self.args(row) for row in rows]
        self._announce(conn, args, True)
        await raw.executemany(self.sql, args)

    def _rows(self, records: Sequence[asyncpg.Record]) -> list[Any]:
        if not records:
            return []
        if self._row is None:
            self._row = namedtuple("Row", list(records[0].keys()), rename=True)  # type: ignore[misc]
        make = self._row._make  # type: ignore[attr-defined]
        converters = self._results
        if not any(converters):
            return [make(record) for record in records]
        return [
            make(value if convert is None or value is None else convert(value)
                 for convert, value in zip(converters, record, strict=True))
            for record in records
        ]


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a pooled SQLAlchemy connection."""
    return (await conn.get_raw_connection()).driver_connection


async def settle_lost_connection(conn: AsyncConnection) -> None:
    """After a driver error: if the connection is gone, let SQLAlchemy find out (one ``SELECT 1``)
    so it invalidates its pool as for its own statements; a live connection is left as it is."""
    with contextlib.suppress(Exception):
        await conn.exec_driver_sql("SELECT 1")


async def _judged(conn: AsyncConnection, exc: BaseException) -> StoreUnavailable:
    """What the store expects for ``exc``: SQLAlchemy's own disconnect error when the connection is
    gone (the probe raises it, as its statement would have), else ``StoreUnavailable`` to raise."""
    client_side = isinstance(exc, (asyncpg.InterfaceError, OSError)) and not isinstance(exc, asyncpg.PostgresError)
    # ConnectionDoesNotExistError ("closed in the middle of operation": a reset mid-statement) is a
    # PostgresError too; unprobed, its dead connection went back to the pool for the next checkout.
    if client_side or isinstance(exc, asyncpg.PostgresConnectionError):
        await conn.exec_driver_sql("SELECT 1")  # raises DBAPIError(connection_invalidated) if dead
    message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    log.warning("store_unavailable", error=message)
    return StoreUnavailable(message)
