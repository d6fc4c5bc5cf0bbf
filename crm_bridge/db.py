"""Engine, sessions and schema upgrade for both backends (SQLite embedded, PostgreSQL in production).

Decisions (measured with bench/store_calls.py, see crm_bridge/README.md):

* **No ``pool_pre_ping``.** It costs a round trip (two with the BEGIN/ROLLBACK asyncpg wraps it in)
  on every checkout: 12 of the 35 round trips of a call. A dropped connection is detected when it is
  used instead (``connection_invalidated`` on the error, the whole pool is then recycled) and the
  store retries that unit of work once when it is safe to (``CrmStore``, ``errors.ConnectionLost``).
* **PostgreSQL hot-path reads run in autocommit** (``autocommit(engine)``): a single statement is
  its own transaction, so no BEGIN and no ROLLBACK round trips; asyncpg prepares each statement once
  per connection (SQLAlchemy's per-connection prepared statement cache, 100 by default).
* **SQLite has one writer at a time inside the process** (``sqlite_writer_lock``): write units of work
  queue on an asyncio lock instead of spinning in ``busy_timeout`` (which blocks a worker thread per
  waiter and still times out under a burst); other processes are kept out by ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"

# Execution option read by the SQLite "begin" hook: write units of work ask for BEGIN IMMEDIATE so
# two writers queue on busy_timeout instead of failing with "database is locked" when a reader
# upgrades to a writer after another transaction committed (WAL snapshot conflict).
SQLITE_BEGIN = "sqlite_begin"
SQLITE_BUSY_TIMEOUT_MS = 15_000


def _json_dumps(value: Any) -> str:
    # Timeline payloads carry Decimal totals and datetimes: store their exact text, never fail.
    return json.dumps(value, ensure_ascii=False, default=str)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """Async engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URLs."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in str(parsed)
        if not in_memory and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        if not in_memory:
            kwargs["pool_size"] = pool_size
        engine = create_async_engine(url, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    # No pool_pre_ping: see the module docstring (retry once instead).
    kwargs.update(pool_size=pool_size)
    return create_async_engine(url, **kwargs)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool in autocommit mode: each statement is its own transaction, no BEGIN/ROLLBACK.

    PostgreSQL only: on SQLite our ``begin`` hook would open a transaction nobody commits.
    """
    if is_sqlite(engine):
        raise ValueError("autocommit() is for PostgreSQL engines")
    return engine.execution_options(isolation_level="AUTOCOMMIT")


_WRITER_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def sqlite_writer_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    """The one asyncio lock every write unit of work on this SQLite engine holds; None on PostgreSQL.

    SQLite allows one writer per database file. Without the lock, N concurrent writers each hold a
    pooled connection and a thread spinning in busy_timeout; with it they wait in Python, cheaply
    and in arrival order, and the writer that runs never finds the file locked by one of ours.
    """
    if not is_sqlite(engine):
        return None
    key = engine.sync_engine
    lock = _WRITER_LOCKS.get(key)
    if lock is None:
        lock = _WRITER_LOCKS[key] = asyncio.Lock()
    return lock


@asynccontextmanager
async def write_session(sessions: async_sessionmaker[AsyncSession],
                        writer_lock: asyncio.Lock | None) -> AsyncIterator[AsyncSession]:
    """One writing unit of work, committed when the block ends: on SQLite under the engine's writer
    lock (``sqlite_writer_lock``) with the write lock taken up front (BEGIN IMMEDIATE, so it never
    fails half-way on a busy file); on PostgreSQL (``writer_lock`` None) a plain session."""
    if writer_lock is not None:
        async with writer_lock, sessions() as session:
            await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            yield session
            await session.commit()
    else:
        async with sessions() as session:
            yield session
            await session.commit()


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when a transaction begins: see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, much faster commits
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    """Sessions whose objects stay readable after commit (services build DTOs after committing)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision``; running it again is a no-op."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_upgrade, url, revision)
    finally:
        await engine.dispose()
    log.info("db_upgraded", backend=make_url(url).get_backend_name(), revision=revision)


async def downgrade(url: str, revision: str) -> None:
    """Take the schema at ``url`` back to ``revision`` (each migration's ``downgrade``)."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_upgrade, url, revision, command.downgrade)
    finally:
        await engine.dispose()
    log.info("db_downgraded", backend=make_url(url).get_backend_name(), revision=revision)


# Two instances (or a supervisor and a stray `ivr db upgrade`) started at once on one PostgreSQL
# must not both run the same migration: the first holds this transaction-level advisory lock, the
# second waits for it and then finds the schema already at head.
MIGRATION_LOCK_KEY = 0x1F4D_0001


def _run_upgrade(connection: Connection, url: str, revision: str, step: Any = command.upgrade) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    cfg = alembic_config(url)
    # env.py uses this connection instead of opening its own (alembic's "connection sharing" recipe).
    cfg.attributes["connection"] = connection
    step(cfg, revision)


# One round trip: a hot standby (recovery) or a database/role set to default_transaction_read_only
# takes no write, so the robot could take no order there.
_PG_READ_ONLY = text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")


async def read_only_reason(session: AsyncSession) -> str | None:
    """Why the database behind ``session`` takes no writes, or None when it does. Cheap enough for
    every health check: one query on PostgreSQL; on SQLite ``SELECT 1`` (it answers) and the file's
    permissions, nothing written (a test write would queue behind the call records' writer)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        in_recovery, read_only = (await session.execute(_PG_READ_ONLY)).one()
        if in_recovery:
            return "hot standby (pg_is_in_recovery)"
        return "transaction_read_only is on" if read_only == "on" else None
    await session.execute(text("SELECT 1"))
    return sqlite_read_only_reason(bind.url)


def sqlite_read_only_reason(url: URL) -> str | None:
    """A read-only SQLite database: opened ``mode=ro``/``immutable``, or a file or directory this
    process may not write (SQLite writes its journal/WAL beside the file). Root passes every
    permission check except a read-only mount, so for root only the URI and the mount count."""
    database = url.database or ""
    query = {k: str(v) for k, v in url.query.items()}
    if query.get("mode") == "ro" or query.get("immutable") == "1" or "mode=ro" in database:
        return "opened read-only (mode=ro)"
    if database in ("", ":memory:") or "mode=memory" in database:
        return None
    path = Path(database.removeprefix("file:").split("?", 1)[0]).expanduser()
    if path.exists() and not os.access(path, os.W_OK):
        return f"file {path} is read-only"
    if not os.access(path.parent, os.W_OK):
        return f"directory {path.parent} is read-only"
    return None
