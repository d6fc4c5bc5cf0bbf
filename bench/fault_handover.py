"""Issue 9: from a fault to the caller hearing the operator hand-over, per fault kind (p50/p99/max).

    .venv/bin/python bench/fault_handover.py                          # every kind, 100 calls each
    .venv/bin/python bench/fault_handover.py --kinds pg_stall_lookup,tts_hang --calls 20 --json out.json

The product's rule: a database or CRM that is down or slow, a TTS engine that hangs, Asterisk talking
nonsense: the process keeps serving and the caller reaches a human within 1.5 s. This bench measures
how long the caller really waits, per fault kind.

What runs where
---------------
* One ivr server per fault kind, in its own process (``bench/agi_load.py --child ivr``: the service
  as ``ivr serve`` starts it, web disabled, AGI on 127.0.0.1), on a fresh database shared by the kinds
  of one backend (demo data + load customers, like agi_load.py), prompts from ``ivr prompts build``.
* PostgreSQL faults: the server reaches PostgreSQL through :class:`FaultProxy` (this file; the same
  idea as tests/db/tcp_proxy.py, which the bench does not import) that can stall (forward nothing,
  connections stay open), delay every reply, refuse connections (its listener closed) or lose the
  reply to the order's statement (it committed on the server, the connection is reset before the
  client hears it). SQLite: another connection holds a write transaction (``BEGIN IMMEDIATE``). TTS: the
  server's ``espeak-ng`` is a wrapper that hangs while a flag file exists. Protocol: the fake
  Asterisk answers the caller's key press with a line that is no AGI reply.
* This process plays Asterisk (the load generator of agi_load.py: env block, one reply per command,
  media answered at once). Calls run in waves of ``--wave``: each call of a wave is held at its
  faulty step (the command whose reply makes the server start it), the fault is switched on, and
  the replies go out; after the wave the fault is switched off and the proxy's links reset.

Per call: **fault** = the moment the fake Asterisk sent the reply that starts the faulty step (the
linkedid for a lookup, the key press "1" for an order, the garbage line); **heard** = the first
thing the caller hears after it: a prompt (GET DATA / STREAM FILE), the hand-over (SET VARIABLE /
EXEC MSet carrying IVR_RESULT) or the connection closed; **hand-over** = IVR_RESULT on the wire or the
close. A call whose silence ends with a menu (GET DATA: the call went on, e.g. a slow lookup that
answered) is hung up there: the bench measures the silence, not the rest of the call. The goal
(≤ 1.5 s) is judged on the p99 of the hand-over, a call that went on counting with its menu.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import platform
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.agi_load import (  # noqa: E402  (after the path)
    HOST,
    LOCAL_PG_HOSTS,
    PG_DEFAULT,
    PG_ENV,
    CallRecord,
    ServerProcess,
    _git_commit,
    _raise_nofile,
    _sets_result,
    env_block,
    pct,
    prepare_database,
    prompt_library,
    reply_to,
    temporary_pg_database,
    verb_of,
)

WARM_NAMES = 10  # distinct names among the load customers (prepare_database's ``names``)
GOAL_S = 1.5  # the product's rule: the caller hears a human (or at least something) within 1.5 s
GARBAGE = "garbage: this is not an AGI reply"  # the protocol fault's reply to the caller's key press
# PostgreSQL's ReadyForQuery ('Z', length 5, transaction status): the end of the server's reply.
_READY_FOR_QUERY = b"Z\x00\x00\x00\x05"


# --------------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------------


class FaultProxy:
    """A TCP proxy in front of PostgreSQL whose mode the bench switches per wave.

    ``forward``: bytes pass. ``stall``: nothing passes either way; connections (old and new) stay
    open, so the client waits on its own deadlines. ``delay``: every chunk from the server reaches
    the client ``delay`` s after it arrived (order kept). ``refuse``: the listener is closed
    (connect() gets ECONNREFUSED) and open connections are reset. ``lose_reply``: the next
    ``losses`` client messages containing ``marker`` go to the server, and the server's reply to
    each, up to its ReadyForQuery (the statement and its transaction are over: committed), is
    swallowed and both sides reset. ``clear()`` resets every link and
    forwards again, so a wave never leaves half a protocol exchange to the next.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "forward"
        self.delay = 0.0
        self.marker = b""
        self.losses = 0  # replies still to lose
        self.lost_replies = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def set_mode(self, mode: str, *, delay: float = 0.0, marker: bytes = b"", losses: int = 0) -> None:
        self.mode, self.delay, self.marker, self.losses = mode, delay, marker, losses
        if mode == "refuse":
            self._reset_all()
            await self._close_listener()

    async def clear(self) -> None:
        self.mode, self.delay = "forward", 0.0
        self._reset_all()
        if self._server is None:
            await self.start()  # the same port: the server's URL still points here

    async def stop(self) -> None:
        self._reset_all()
        await self._close_listener()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def _reset_all(self) -> None:
        for client, server in list(self._links):
            _reset(client)
            if server is not None:
                _reset(server)
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "stall":  # a new connection during a stall hangs too (its startup unanswered)
            link = (writer, None)
            self._links.add(link)
            with contextlib.suppress(OSError, ConnectionError):
                while await reader.read(65536):
                    pass
            self._links.discard(link)
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        committing = asyncio.Event()  # a marked statement went up under lose_reply: its reply is lost
        try:
            await asyncio.gather(
                self._upstream(reader, up_writer, committing), self._downstream(up_reader, writer, link, committing)
            )
        finally:
            self._links.discard(link)
            _reset(writer)
            _reset(up_writer)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, committing) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if self.mode == "stall":
                    continue  # swallowed: the link is reset when the wave ends
                if self.mode == "lose_reply" and self.losses > 0 and self.marker in data:
                    self.losses -= 1
                    committing.set()
                writer.write(data)
                await writer.drain()
        _reset(writer)

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link, committing) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:  # keeps the order of chunks while each waits out its delay
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await reader.read(65536):
                    if sender.done():
                        break
                    if self.mode == "stall":
                        continue
                    if committing.is_set():
                        if _READY_FOR_QUERY not in data:
                            continue  # the server is still answering: the client never hears it
                        self.lost_replies += 1
                        break
                    due = time.monotonic() + (self.delay if self.mode == "delay" else 0.0)
                    queue.put_nowait((due, data))
            if not committing.is_set():
                queue.put_nowait(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(sender), self.delay + 1)
        finally:
            sender.cancel()
            client, server = link
            _reset(client)
            _reset(server)


def order_statement_marker() -> bytes:
    """Bytes only the order's statement sends: it alone binds the invoice prefix (orders.invoice_prefix).
    On PostgreSQL the order is one autocommit statement (crm_bridge/pg_direct.py): no COMMIT goes by,
    the statement's reply is the commit's."""
    from ivr.settings import load_settings

    return load_settings().orders.invoice_prefix.encode("utf-8")


def _reset(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()


class SqliteWriteLock:
    """Another writer on the SQLite file: ``BEGIN IMMEDIATE`` held until ``release()``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    async def hold(self) -> None:
        def take() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")  # waits out a batch of the server's own record writer
            return conn

        self._conn = await asyncio.to_thread(take)

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(lambda: (conn.execute("ROLLBACK"), conn.close()))


def hanging_tts(bindir: Path, flag: Path) -> Path:
    """An ``espeak-ng`` first on the server's PATH: the real one, except while ``flag`` exists, when it
    never returns (``exec sleep``: the server's kill at its deadline ends it, no orphan is left)."""
    real = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "espeak-ng"
    script.write_text(f'#!/bin/sh\nif [ -e "{flag}" ]; then exec sleep 3600; fi\nexec "{real}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bindir


# --------------------------------------------------------------------------------------------------
# kinds
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    backend: str  # "postgres" | "sqlite"
    step: str  # "lookup": the fault bites at the linkedid's reply; "order": at the key press "1"
    what: str
    proxy_mode: str | None = None  # FaultProxy mode during the wave
    delay: float = 0.0
    sqlite_lock: bool = False
    tts_hang: bool = False
    garbage: bool = False


KINDS = [
    Kind("pg_stall_lookup", "postgres", "lookup", "PostgreSQL stalls (proxy forwards nothing) during the caller lookup",
         proxy_mode="stall"),
    Kind("pg_slow_lookup", "postgres", "lookup", "PostgreSQL slow: every reply 2 s late, from the caller lookup on",
         proxy_mode="delay", delay=2.0),
    Kind("pg_down_lookup", "postgres", "lookup", "PostgreSQL down (connection refused) at the caller lookup",
         proxy_mode="refuse"),
    Kind("pg_stall_order", "postgres", "order", "PostgreSQL stalls after the caller pressed 1 (the order write)",
         proxy_mode="stall"),
    Kind("pg_reset_after_commit", "postgres", "order",
         "connection reset after the order's commit reached the server (one per call)", proxy_mode="lose_reply"),
    Kind("tts_hang", "postgres", "lookup", "TTS engine never returns (greeting with a name not in the prompt cache)",
         tts_hang=True),
    Kind("agi_garbage", "postgres", "order", "a garbage AGI reply to the caller's key press (protocol error)",
         garbage=True),
    Kind("sqlite_locked_order", "sqlite", "order",
         "SQLite locked by another writer (a held transaction) at the order",
         sqlite_lock=True),
]
KIND_NAMES = [k.name for k in KINDS]

# Customers whose first names are in no prompt library: their greeting needs the TTS engine.
TTS_NAMES = [("Евлампий", "Фомич", "Бенчев"), ("Олимпиада", "Мироновна", "Сбоева"), ("Порфирий", "Саввич", "Тестов")]


def write_tts_customers(directory: Path) -> tuple[Path, Path, list[str]]:
    customers, orders = directory / "tts-customers.csv", directory / "tts-orders.csv"
    phones = []
    with customers.open("w", newline="", encoding="utf-8") as fc, orders.open("w", newline="", encoding="utf-8") as fo:
        wc, wo = csv.writer(fc), csv.writer(fo)
        wc.writerow(["customer_id", "last_name", "first_name", "patronymic", "phones", "address", "language"])
        wo.writerow(["order_id", "customer_id", "ordered_at", "sku", "quantity"])
        for i, (first, patronymic, last) in enumerate(TTS_NAMES):
            phone, cid = f"+7916{8_000_000 + i:07d}", f"T{i:05d}"
            wc.writerow([cid, last, first, patronymic, phone, f"Москва, ул. Сбойная, д. {i + 1}", "ru"])
            wo.writerow([f"H-T{i:05d}", cid, "2026-10-01T10:00:00", "WATER-19", 2])
            phones.append(phone)
    return customers, orders, phones


async def add_tts_customers(url: str, workdir: Path) -> list[str]:
    from crm_bridge.db import create_engine, session_factory
    from crm_bridge.importers import import_file

    customers, orders, phones = write_tts_customers(workdir)
    engine = create_engine(url, pool_size=1)
    try:
        sessions = session_factory(engine)
        for table, path in (("customers", customers), ("orders", orders)):
            report = await import_file(sessions, table, path)
            if report.errors:
                raise RuntimeError(f"import of {path.name} failed: {report.errors[:3]}")
    finally:
        await engine.dispose()
    return phones


# --------------------------------------------------------------------------------------------------
# calls (Asterisk's side)
# --------------------------------------------------------------------------------------------------


@dataclass
class FaultCall:
    index: int
    caller_id: str
    linkedid: str
    reached: bool = False  # the call got to its faulty step
    fault_at: float | None = None
    heard_s: float | None = None  # fault -> first prompt, hand-over or close
    heard: str | None = None  # what ended the silence
    handover_s: float | None = None  # fault -> IVR_RESULT on the wire (or the close)
    hung_up: bool = False  # the silence ended with a menu: the caller hung up there
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def result(self) -> str:
        return self.variables.get("IVR_RESULT", "<unset>")

    @property
    def reason(self) -> str:
        return self.variables.get("IVR_REASON", "<unset>")


class Wave:
    """Calls held at their faulty step until every call of the wave is there (or gone)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.arrived = 0
        self.gone = 0  # ended before reaching the step
        self.ready = asyncio.Event()
        self.go = asyncio.Event()

    def _check(self) -> None:
        if self.arrived + self.gone >= self.size:
            self.ready.set()

    def arrive(self) -> None:
        self.arrived += 1
        self._check()

    def leave_early(self) -> None:
        self.gone += 1
        self._check()


def asterisk_reply(command: str, rec: CallRecord) -> str:
    """agi_load's fake Asterisk, plus GET FULL VARIABLE (the server's marker to get back in step after
    a protocol error): Asterisk evaluates the expression, and a plain word comes back as it is."""
    from ivr.agi.wire import split_agi_args

    if verb_of(command) == "GET FULL":
        words = split_agi_args(command)
        return f"200 result=1 ({words[3]})" if len(words) > 3 else "200 result=0"
    return reply_to(command, rec, check_files=True)


def _is_trigger(kind: Kind, command: str) -> bool:
    verb = verb_of(command)
    if kind.step == "lookup":
        return verb == "GET VARIABLE" and "CHANNEL(linkedid)" in command
    return verb == "GET DATA"  # the greeting's menu: the caller presses 1, the order is placed


async def fault_call(call: FaultCall, port: int, kind: Kind, wave: Wave, idle: float) -> None:
    rec = CallRecord(call.index, call.caller_id, call.linkedid)  # reply_to() keeps the variables here
    writer = None
    triggered = False
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), idle)
        writer.write(env_block(port, call.caller_id, call.linkedid, call.index))
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), idle)
            except TimeoutError:
                call.error = f"silent>{idle:g}s after {call.commands[-1] if call.commands else 'env'}"
                return
            now = time.perf_counter()
            if not line:
                if call.fault_at is not None:
                    if call.heard_s is None:
                        call.heard_s, call.heard = now - call.fault_at, "close"
                    if call.handover_s is None:
                        call.handover_s = now - call.fault_at
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            call.commands.append(command)
            verb = verb_of(command)
            if call.fault_at is not None:
                sets_result = _sets_result(command)
                if call.heard_s is None and (sets_result or verb in ("GET DATA", "STREAM FILE")):
                    call.heard_s = now - call.fault_at
                    call.heard = "hand-over" if sets_result else verb
                if sets_result and call.handover_s is None:
                    call.handover_s = now - call.fault_at
                if verb == "GET DATA" and call.handover_s is None:
                    call.hung_up = True  # a menu after the fault: the silence is measured, the caller hangs up
                    return
            reply = asterisk_reply(command, rec)
            call.variables = rec.variables
            if not triggered and _is_trigger(kind, command):
                triggered = call.reached = True
                wave.arrive()
                await wave.go.wait()  # the fault is on
                if kind.garbage:
                    reply = GARBAGE
                writer.write((reply + "\n").encode())
                await writer.drain()
                call.fault_at = time.perf_counter()
                continue
            writer.write((reply + "\n").encode())
            await writer.drain()
    except (OSError, TimeoutError) as exc:
        call.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        if not triggered:
            wave.leave_early()
        if writer is not None:
            writer.close()


# --------------------------------------------------------------------------------------------------
# one kind: a server, waves of calls
# --------------------------------------------------------------------------------------------------


@dataclass
class Backends:
    pg_url: str | None = None
    sqlite_url: str | None = None
    sqlite_path: str | None = None
    callers: dict[str, list[str]] = field(default_factory=dict)  # backend -> load callers
    tts_callers: dict[str, list[str]] = field(default_factory=dict)


async def run_kind(kind: Kind, args: argparse.Namespace, workdir: Path, prompts_src: Path | None,
                   backends: Backends) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    url = backends.pg_url if kind.backend == "postgres" else backends.sqlite_url
    assert url is not None
    prompts = workdir / f"prompts-{kind.name}"
    if prompts_src is not None:
        shutil.copytree(prompts_src, prompts)
    else:
        prompts.mkdir()
    proxy: FaultProxy | None = None
    server_url = url
    if kind.proxy_mode:
        target = make_url(url)
        proxy = await FaultProxy(target.host or "127.0.0.1", target.port or 5432).start()
        server_url = target.set(host=HOST, port=proxy.port).render_as_string(hide_password=False)
    lock = SqliteWriteLock(backends.sqlite_path) if kind.sqlite_lock and backends.sqlite_path else None
    flag = workdir / f"tts-hang-{kind.name}"
    server = ServerProcess("ivr", workdir, db_url=server_url, prompts_dir=str(prompts), calls_dir="")
    server.env["IVR_CALL_RECORDS__SPOOL_DIR"] = str(workdir / f"spool-{kind.name}")  # never the checkout's var/
    server.env["IVR_AGI__MAX_CALL_RATE"] = "0"
    # Operators on duty around the clock: a fault must reach the queue whatever the hour the bench
    # runs (after hours the robot offers a callback instead, and the results would depend on the clock).
    server.env.update({"IVR_HOURS__OPEN": "00:00", "IVR_HOURS__CLOSE": "23:59:59.999999",
                       "IVR_HOURS__DAYS": "1,2,3,4,5,6,7", "IVR_HOURS__HOLIDAYS": ""})
    if kind.tts_hang:
        server.env["PATH"] = f"{hanging_tts(workdir / 'fakebin', flag)}{os.pathsep}{server.env.get('PATH', '')}"
        server.env["IVR_PROMPTS__WARM_AT_START"] = "false"  # the new customers' names stay out of the cache
    callers = (backends.tts_callers if kind.tts_hang else backends.callers)[kind.backend]
    order_marker = order_statement_marker()

    async def fault_on(calls_at_step: int) -> None:
        if proxy is not None:
            await proxy.set_mode(kind.proxy_mode or "forward", delay=kind.delay, marker=order_marker,
                                 losses=calls_at_step)
        if lock is not None:
            await lock.hold()
        if kind.tts_hang:
            flag.touch()

    async def fault_off() -> None:
        flag.unlink(missing_ok=True)
        if lock is not None:
            await lock.release()
        if proxy is not None:
            await proxy.clear()

    calls: list[FaultCall] = []
    phases: dict[str, float] = {}
    warm_results: Counter[str] = Counter()
    load_start = os.getloadavg()
    t_start = time.monotonic()
    try:
        await server.start()
        phases["start_s"] = round(time.monotonic() - t_start, 2)
        # Plain calls first, one per distinct greeting the waves will use (the load customers share
        # WARM_NAMES names and one order; call i is customer i), one after the other: the pool is
        # connected and every greeting the waves' callers hear is composed, as on a server in
        # service. Otherwise the first wave's callers would meet the composing of ten greetings at
        # once before their faulty step. The tts_hang callers' names stay uncached: not among these.
        warm_kind = Kind("warm-up", kind.backend, "none", "")
        for i, caller in enumerate(backends.callers[kind.backend][: min(WARM_NAMES, args.calls)]):
            warm = FaultCall(-1 - i, caller, f"{int(time.time())}.warm{uuid.uuid4().hex[:6]}")
            warm_wave = Wave(1)
            warm_wave.go.set()
            await fault_call(warm, server.port, warm_kind, warm_wave, args.call_timeout)
            warm_results[f"{warm.result}/{warm.reason}"] += 1
        tag = f"{int(time.time())}.{kind.name[:6]}{uuid.uuid4().hex[:4]}x"
        index = 0
        while index < args.calls:
            size = min(args.wave, args.calls - index)
            wave = Wave(size)
            batch = [FaultCall(i, callers[i % len(callers)], f"{tag}{i}") for i in range(index, index + size)]
            index += size
            tasks = [asyncio.create_task(fault_call(c, server.port, kind, wave, args.call_timeout)) for c in batch]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wave.ready.wait(), args.call_timeout)
            await fault_on(wave.arrived)
            try:
                wave.go.set()
                _done, pending = await asyncio.wait(tasks, timeout=args.call_timeout + 5)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=5)
            finally:
                await fault_off()
            calls.extend(batch)
            await asyncio.sleep(args.pause)  # the server's pool and writer settle before the next wave
            print(f"[{kind.name}] {len(calls)}/{args.calls} calls", file=sys.stderr)
    finally:
        flag.unlink(missing_ok=True)
        if lock is not None:
            await lock.release()
        t_stop = time.monotonic()
        await server.stop()
        phases["stop_s"] = round(time.monotonic() - t_stop, 2)
        if proxy is not None:
            await proxy.stop()
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy(server.log_path, keep / f"{kind.name}.log")
    row = summarize(kind, calls, load_start, os.getloadavg(), time.monotonic() - t_start, proxy)
    row["server_phases_s"] = phases
    row["warm_up_results"] = dict(warm_results)
    return row


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": _r(pct(values, 50)), "p99": _r(pct(values, 99)), "max": _r(max(values) if values else None)}


def summarize(kind: Kind, calls: list[FaultCall], load_start, load_end, elapsed: float,
              proxy: FaultProxy | None) -> dict[str, Any]:
    reached = [c for c in calls if c.reached]
    heard = [c.heard_s for c in reached if c.heard_s is not None]
    handover = [c.handover_s for c in reached if c.handover_s is not None]
    silent = [c for c in reached if c.heard_s is None]  # the caller heard nothing at all
    # The goal is judged on the hand-over; a call that went on instead (a menu after a slow lookup
    # that answered) counts with the time to that menu: the caller was served, that late.
    served = [c.handover_s if c.handover_s is not None else c.heard_s for c in reached if c.heard_s is not None]
    served_stats = _stats(served)
    meets = bool(reached) and not silent and served_stats["p99"] is not None and served_stats["p99"] <= GOAL_S
    return {
        "kind": kind.name,
        "what": kind.what,
        "backend": kind.backend,
        "step": kind.step,
        "calls": len(calls),
        "reached": len(reached),
        "heard_s": _stats(heard),
        "handover_s": _stats(handover),
        "served_s": served_stats,
        "handed_over": len(handover),
        "meets_goal": meets,
        "never_heard": len(silent),
        "heard_by": dict(Counter(c.heard for c in reached if c.heard)),
        "results": dict(Counter(f"{c.result}/{c.reason}" for c in reached if not c.hung_up)),
        "hung_up_at_menu": sum(c.hung_up for c in reached),
        "errors": dict(Counter(c.error for c in calls if c.error)),
        "not_reached": len(calls) - len(reached),
        # handed over before their faulty step: what the server said (a finding, not a fault's effect)
        "not_reached_results": dict(Counter(f"{c.result}/{c.reason}" for c in calls if not c.reached)),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
        "elapsed_s": round(elapsed, 1),
        "lost_replies": proxy.lost_replies if proxy is not None else None,
        # every call, for distributions (e.g. two modes) the percentiles hide
        "per_call": [
            {"heard_s": _r(c.heard_s), "heard": c.heard, "handover_s": _r(c.handover_s), "result": c.result,
             "reason": c.reason, "hung_up_at_menu": c.hung_up, "error": c.error}
            for c in calls
        ],
    }


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def _triple(s: dict[str, float | None]) -> str:
    return f"{_f(s['p50'])} / {_f(s['p99'])} / {_f(s['max'])}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ["kind", "backend", "calls", "fault → heard p50/p99/max s", "fault → hand-over p50/p99/max s",
            f"≤ {GOAL_S:g} s", "heard first", "IVR_RESULT/IVR_REASON", "load avg start→end"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in rows:
        results = ", ".join(f"{k} ×{n}" for k, n in sorted(r["results"].items(), key=lambda kv: -kv[1])) or "-"
        if r["hung_up_at_menu"]:
            results += f"; menu (caller hung up) ×{r['hung_up_at_menu']}"
        heard_by = ", ".join(f"{k} ×{n}" for k, n in sorted(r["heard_by"].items(), key=lambda kv: -kv[1])) or "-"
        lines.append("| " + " | ".join([
            r["kind"], r["backend"], f"{r['reached']}/{r['calls']}", _triple(r["heard_s"]), _triple(r["handover_s"]),
            "yes" if r["meets_goal"] else "**no**", heard_by, results,
            f"{r['loadavg_start'][0]:.2f} → {r['loadavg_end'][0]:.2f}",
        ]) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


async def prepare_backends(kinds: list[Kind], args: argparse.Namespace, workdir: Path,
                           stack: contextlib.AsyncExitStack) -> Backends:
    backends = Backends()
    customers = max(10, min(args.calls, 200))
    for backend in sorted({k.backend for k in kinds}):
        if backend == "postgres":
            url = await stack.enter_async_context(temporary_pg_database(args.pg_url))
            backends.pg_url = url
        else:
            backends.sqlite_path = str(workdir / "fault-bench.sqlite3")
            url = backends.sqlite_url = f"sqlite+aiosqlite:///{backends.sqlite_path}"
        sub = workdir / f"data-{backend}"
        sub.mkdir()
        data = await prepare_database(url, sub, customers, WARM_NAMES)
        backends.callers[backend] = data["load"]
        if any(k.tts_hang and k.backend == backend for k in kinds):
            backends.tts_callers[backend] = await add_tts_customers(url, sub)
    return backends


async def main_async(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    kinds = [k for k in KINDS if k.name in args.kinds]
    if any(k.backend == "postgres" for k in kinds):
        host = make_url(args.pg_url).host or "127.0.0.1"
        if host not in LOCAL_PG_HOSTS:
            print(f"refusing a non-local PostgreSQL host {host!r}: this benchmark stays on 127.0.0.1", file=sys.stderr)
            return 2
    _raise_nofile(4096)
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ivr-fault-bench-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            backends = await prepare_backends(kinds, args, workdir, stack)
            prompts_src = None if args.cold_prompts else await prompt_library(workdir)
            try:
                async with asyncio.timeout(args.deadline):
                    for kind in kinds:
                        row = await run_kind(kind, args, workdir, prompts_src, backends)
                        rows.append(row)
                        print(f"[{kind.name}] hand-over p99 {row['served_s']['p99']} s, results {row['results']}",
                              file=sys.stderr)
            except TimeoutError:
                print(f"global deadline of {args.deadline} s reached; reporting what finished", file=sys.stderr)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "commit": _git_commit(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "calls_per_kind": args.calls,
        "wave": args.wave,
        "goal_s": GOAL_S,
        "prompts": "cold (empty dir)" if args.cold_prompts else "ivr prompts build",
    }
    print(
        f"\n{meta['date']}  {meta['machine']}  python {meta['python']}  commit {meta['commit']}  load average "
        f"{' '.join(f'{x:.2f}' for x in load_start)} → {' '.join(f'{x:.2f}' for x in meta['loadavg_end'])} "
        f"(1/5/15 min), {args.calls} calls per kind in waves of {args.wave}\n"
    )
    print(markdown_table(rows))
    for r in rows:
        keys = ("errors", "not_reached", "not_reached_results", "never_heard", "lost_replies", "elapsed_s",
                "server_phases_s", "warm_up_results")
        extra = {k: r[k] for k in keys if r[k]}
        if extra:
            print(f"\n{r['kind']}: {json.dumps(extra, ensure_ascii=False)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "kinds": rows}, ensure_ascii=False, indent=2))
        print(f"\nresults written to {args.json}")
    broken = len(rows) < len(kinds) or any(r["never_heard"] or r["not_reached"] for r in rows)
    return 1 if broken else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", default=",".join(KIND_NAMES),
                   help=f"comma-separated fault kinds (default all): {', '.join(KIND_NAMES)}")
    p.add_argument("--calls", type=int, default=100, help="calls per kind (default 100)")
    p.add_argument("--wave", type=int, default=10, help="calls that meet the fault together (default 10)")
    p.add_argument("--pause", type=float, default=0.5, help="seconds between waves (default 0.5)")
    p.add_argument("--call-timeout", type=float, default=60.0, help="a call fails when the server is silent this long")
    p.add_argument("--deadline", type=float, default=3600.0, help="global deadline in seconds (default 3600)")
    p.add_argument("--cold-prompts", action="store_true",
                   help="start each server with an empty prompts dir instead of `ivr prompts build` (faster setup)")
    p.add_argument("--pg-url", default=os.environ.get(PG_ENV) or PG_DEFAULT,
                   help=f"a throw-away database is made there (default ${PG_ENV} or {PG_DEFAULT})")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--keep-logs", help="copy the servers' logs to this directory")
    args = p.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(args.kinds) - set(KIND_NAMES))
    if unknown:
        p.error(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KIND_NAMES)}")
    if args.calls < 1 or args.wave < 1:
        p.error("--calls and --wave must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from ivr import event_loop
    from ivr.logs import configure_logging

    args = parse_args(argv)
    configure_logging("WARNING")  # the importers' info lines would bury the report
    return event_loop.run(main_async(args), "asyncio")


if __name__ == "__main__":
    sys.exit(main())
