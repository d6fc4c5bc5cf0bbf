"""AMI ownership: the process holding a PostgreSQL session-level advisory lock owns the AMI connection.

Decisions:

- ``pg_try_advisory_lock(AMI_LOCK_KEY)`` on a dedicated asyncpg connection (not a pooled one: a
  session-level lock lives exactly as long as its session). PostgreSQL releases it when the session
  ends, whatever ends it: a clean exit, SIGKILL of the holder (its kernel closes the socket and the
  backend sees EOF at once), or a dead machine (the session sets TCP keepalives, so the backend gives
  up on a silent peer after ``KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT`` s). Advisory
  locks are per database, so one database is one deployment, across processes and machines.
- *Try*, never wait: a standby asks again every ``retry_interval`` (1 s). Takeover time is therefore
  PostgreSQL noticing the dead holder + at most one retry interval + the AMI login (measured in
  tests/cluster/test_leader.py against the fake AMI: see the report in the test's output).
- The owner checks its session every ``check_interval`` (``SELECT 1`` with a deadline) and listens for
  the connection's termination. Any doubt (failed check, closed connection, deadline) stops AMI
  *before* anything else, because the lock may already be someone else's: two AMI owners would write
  every queue event twice. The window of such doubt is bounded by ``check_interval + check_timeout``.
- ``on_acquired`` runs before the role says "owner", and ``on_lost`` before the session is closed on
  a clean stop, so a clean hand-over never has two owners.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import asyncpg
import structlog

# Fixed: every `ivr` process on the same database competes for the same lock. ("ivr-ami" in ASCII.)
AMI_LOCK_KEY = 0x6976_722D_616D_69
KEEPALIVE_IDLE = 2
KEEPALIVE_INTERVAL = 1
KEEPALIVE_COUNT = 2
_SESSION_SETTINGS = {
    "application_name": "ivr-ami-lock",
    "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
    "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
    "tcp_keepalives_count": str(KEEPALIVE_COUNT),
}

Role = Literal["owner", "standby"]
Hook = Callable[[], Awaitable[None]]
Connect = Callable[..., Awaitable[asyncpg.Connection]]


class AmiOwnership:
    """Competes for the AMI lock until stopped; ``on_acquired``/``on_lost`` start and stop AMI."""

    def __init__(
        self,
        dsn: str,
        *,
        on_acquired: Hook,
        on_lost: Hook,
        key: int = AMI_LOCK_KEY,
        retry_interval: float = 1.0,
        check_interval: float = 1.0,
        check_timeout: float = 2.0,
        connect: Connect = asyncpg.connect,
        logger: Any = None,
    ) -> None:
        self._dsn = dsn
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._key = key
        self._retry_interval = retry_interval
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        self._connect = connect
        self._log = logger if logger is not None else structlog.get_logger("ivr.cluster")
        self._role: Role = "standby"
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self.acquisitions = 0
        self.refusals = 0  # times the lock was asked for and held by another process

    @property
    def role(self) -> Role:
        return self._role

    def health(self) -> dict[str, Any]:
        return {"role": self._role, "acquisitions": self.acquisitions, "refusals": self.refusals,
                "last_error": self._last_error}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ami-ownership")

    async def stop(self) -> None:
        """Stop AMI if we own it, then end the session (which releases the lock)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        logged_standby = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel (stop()) that
                # races the statement's reply, and this loop then ran on forever (a hung stop(), seen in
                # tests/cluster/test_leader.py about one run in three).
                async with asyncio.timeout(self._check_timeout):
                    conn = await self._connect(self._dsn, server_settings=_SESSION_SETTINGS)
                while not await self._try_lock(conn):
                    self.refusals += 1
                    if not logged_standby:
                        self._log.info("ami.standby", reason="another process holds the AMI lock")
                        logged_standby = True
                    await asyncio.sleep(self._retry_interval)
                await self._hold(conn)
            except Exception as exc:  # database down, session killed, AMI start failed: try again later
                error = f"{type(exc).__name__}: {exc}"[:200]
                if error != self._last_error:
                    self._log.warning("ami.lock_session_failed", error=error, role=self._role)
                self._last_error = error
            finally:
                # Also on stop() (cancelled): AMI is stopped before the session and its lock go away.
                await self._give_up(conn)
            logged_standby = False
            await asyncio.sleep(self._retry_interval)

    async def _try_lock(self, conn: asyncpg.Connection) -> bool:
        async with asyncio.timeout(self._check_timeout):
            return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self._key))

    async def _hold(self, conn: asyncpg.Connection) -> None:
        """Own AMI until the session is lost (returns or raises) or we are cancelled."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self.acquisitions += 1
        self._log.info("ami.owner", acquisitions=self.acquisitions)
        try:
            await self._on_acquired()
        finally:
            self._role = "owner"  # even if on_acquired failed half-way: _give_up must stop it
        self._last_error = None
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval):
                    await lost.wait()
                break
            async with asyncio.timeout(self._check_timeout):
                await conn.fetchval("SELECT 1")
        self._log.warning("ami.lock_session_lost")

    async def _give_up(self, conn: asyncpg.Connection | None) -> None:
        if self._role == "owner":
            self._role = "standby"
            try:
                await self._on_lost()
            except Exception:
                self._log.exception("ami.stop_failed")
            self._log.info("ami.released")
        if conn is not None and not conn.is_closed():
            # terminate(), not close(): close() waits for the server, which may be what just failed.
            conn.terminate()
