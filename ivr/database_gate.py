"""The database as the service sees it: ready or not since start, reachable or not since when.

``ivr serve`` with the database down at start (connection refused, a host not resolving yet,
PostgreSQL still starting up) does not exit: the FastAGI listener and /healthz come up, every call
is handed to an operator at once (``IVR_REASON=database_unavailable``, its row spooled by the record
writer), and ``retry_until_ready`` tries again in the background (exponential backoff from
``database.retry_min`` to ``database.retry_max``, ±50 % jitter so N workers do not knock in step, one
log line per attempt with the next delay). When the database answers, the start is finished
(migrations) and the next call gets the normal handler, without a restart.

What can never succeed without a human still stops the start with one line (``StartupError``): a URL
SQLAlchemy cannot load (bad scheme or driver: raised before any connect), a role or password the
server refuses (SQLSTATE class 28) and a database that does not exist (3D000). Retrying those would
only fill the server's auth log while every caller waits for an operator; the orchestrator's restart
loop shows the line instead. Once the service is up, even those are retried (and logged): the
service is already taking calls, and exiting would drop them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from crm_bridge.contract.dialplan import IvrResult, Var
from crm_bridge.contract.outcomes import Reason
from ivr.agi.channel import AgiChannel
from ivr.agi.errors import AgiError

log = structlog.get_logger("ivr.database")

Handler = Callable[[AgiChannel], Awaitable[None]]
# SQLSTATEs a retry cannot fix: class 28 (role, password, pg_hba) and 3D000 (no such database).
_FATAL_SQLSTATE_PREFIXES = ("28", "3D")
# Connection exception, insufficient resources, operator intervention, read-only transaction.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57", "25006")


def _sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE anywhere in the chain (SQLAlchemy wraps the asyncpg error)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str) and code:
            return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def never_reachable(exc: BaseException) -> bool:
    """A configuration error: retrying cannot help (see the module docstring)."""
    if isinstance(exc, ArgumentError):  # includes NoSuchModuleError: a scheme/driver we cannot load
        return True
    code = _sqlstate(exc)
    return code is not None and code.startswith(_FATAL_SQLSTATE_PREFIXES)


def may_come_back(exc: BaseException) -> bool:
    """The database is not there *now*: refused, unresolvable, timed out, starting up (57P03), too
    many connections (53), a standby not promoted yet (25006). A migration that fails on a database
    that answers is a bug to show, not to retry."""
    if never_reachable(exc):
        return False
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    code = _sqlstate(exc)
    if code is not None:
        return code.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))


def one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class DatabaseGate:
    """Shared by the composition root (which opens it), the FastAGI routes (which consult it) and
    /healthz (which reports it and tells it when a check failed)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self.ready = False  # the start is finished (migrations ran): calls get the normal handler
        self.unreachable_since: datetime | None = None
        self.last_error: str | None = None
        self.attempts = 0  # start-up attempts so far
        self.became_ready = asyncio.Event()

    def mark_ready(self) -> None:
        self.ready = True
        self.mark_reachable()
        self.became_ready.set()

    def mark_reachable(self) -> None:
        self.unreachable_since = None
        self.last_error = None

    def mark_unreachable(self, error: str) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = self._clock()
        self.last_error = error

    def health(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "unreachable_since": self.unreachable_since.isoformat() if self.unreachable_since else None,
            "error": self.last_error,
        }

    def guard(self, handler: Handler, on_refused: Callable[[AgiChannel], None]) -> Handler:
        """``handler`` once the database is ready; until then, every call to an operator at once."""

        async def gated(channel: AgiChannel) -> None:
            if self.ready:
                await handler(channel)
                return
            log.warning("call.database_unavailable", uniqueid=channel.env.uniqueid, script=channel.env.script,
                        unreachable_since=self.health()["unreachable_since"])
            try:
                await channel.set_variables({Var.RESULT: IvrResult.OPERATOR, Var.REASON: Reason.DATABASE_UNAVAILABLE})
            except AgiError as exc:  # the caller hung up first: the dialplan queues (or ends) anyway
                log.info("call.database_unavailable_not_told", uniqueid=channel.env.uniqueid, error=one_line(exc))
            on_refused(channel)

        return gated


async def retry_until_ready(
    gate: DatabaseGate,
    prepare: Callable[[], Awaitable[None]],
    *,
    retry_min: float,
    retry_max: float,
    on_ready: Callable[[], None] | None = None,
    jitter: Callable[[], float] = random.random,
) -> None:
    """Run ``prepare`` (a ping, then migrations) until it succeeds, then open the gate and tell
    ``on_ready`` (the record writer replays what it spooled meanwhile, at once)."""
    delay = retry_min
    while not gate.ready:
        gate.attempts += 1
        try:
            await prepare()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = one_line(exc)
            gate.mark_unreachable(error)
            wait = min(retry_max, delay * (0.5 + jitter()))
            event = "database.misconfigured" if never_reachable(exc) else \
                "database.unavailable" if may_come_back(exc) else "database.start_failed"
            log.warning(event, attempt=gate.attempts, error=error, retry_in=round(wait, 2))
            await asyncio.sleep(wait)
            delay = min(retry_max, delay * 2)
            continue
        gate.mark_ready()
        if on_ready is not None:
            on_ready()
        log.info("database.ready", attempts=gate.attempts)
