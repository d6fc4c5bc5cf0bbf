"""FastAGI load benchmark: N concurrent repeat-order calls against one ivr server process.

    .venv/bin/python bench/agi_load.py --backend sqlite|postgres|both [--calls 1000] [--json out.json]

What runs where
---------------
* The server under test is ONE child process running ``ivr.app.start_service(settings)`` (this file
  re-executed with ``--child ivr``): web disabled, AGI on 127.0.0.1 with an ephemeral port, a fresh
  database with the demo data plus generated load customers, prompts in a temp dir. Its peak RSS
  (psutil sampling + its own ``ru_maxrss``) and CPU time are its own, not the load generator's.
* The baseline is a trivial echo FastAGI server (``--child echo``): reads the env block, then sends
  the same 8 commands the repeat-order call sends (ANSWER, GET VARIABLE, GET DATA, STREAM FILE,
  SET VARIABLE x4), one reply each, and closes. Same child-process setup, same load generator.
* The load generator (this process, one asyncio loop) plays Asterisk byte for byte: env block, one
  reply per command (ANSWER -> ``200 result=0``, GET VARIABLE CHANNEL(linkedid) -> a unique id per
  call, GET DATA -> the caller presses "1", STREAM FILE -> ``200 result=0 endpos=N``, SET VARIABLE ->
  ``200 result=1``); media is answered at once (no playback time), so this is the worst case for the
  server: every call wants its next step immediately. Like Asterisk it checks that a prompt file exists
  (``result=-1`` otherwise).
* On a 2-core box the server, the load generator, espeak-ng children and PostgreSQL share the cores.

Measured per run (at the client): calls/s, completed/failed, IVR_RESULT/IVR_REASON distribution,
server think time per AGI command (time from sending a reply, or the env block, to receiving the next
command; per command kind too), time from TCP connect to the first prompt (first STREAM FILE/GET
DATA), whole call time, server peak RSS/CPU, and each against the echo baseline. After each run the
database is checked: orders and invoices placed by ivr, and the outcomes the server recorded.

Bounded: connects only to 127.0.0.1 (and a PostgreSQL on localhost), a global deadline
(``--deadline``, default 300 s) over everything, a per-command idle limit per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import platform
import re
import resource
import shutil
import signal
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

try:
    import psutil
except ImportError:  # optional: without it only ru_maxrss of the child is reported
    psutil = None

HOST = "127.0.0.1"  # the only address this benchmark ever connects to
LOCAL_PG_HOSTS = {"127.0.0.1", "localhost", "::1"}
PG_ENV = "IVR_TEST_DATABASE_URL"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SCRIPT = "repeat-order"
ECHO_COMMANDS = 8

# Greeting names (first name, patronymic): the greeting prompt is "Здравствуйте, <first> <patronymic>.
# Ваш прошлый заказ: <order>. …", so customers sharing a name and an order share one greeting file.
NAMES = [
    ("Иван", "Петрович", "Иванов"),
    ("Мария", "Сергеевна", "Смирнова"),
    ("Алексей", "Николаевич", "Кузнецов"),
    ("Ольга", "Викторовна", "Попова"),
    ("Дмитрий", "Андреевич", "Васильев"),
    ("Елена", "Игоревна", "Новикова"),
    ("Сергей", "Павлович", "Морозов"),
    ("Анна", "Дмитриевна", "Волкова"),
    ("Николай", "Юрьевич", "Соколов"),
    ("Татьяна", "Олеговна", "Лебедева"),
    ("Павел", "Ильич", "Козлов"),
    ("Наталья", "Петровна", "Егорова"),
]


# --------------------------------------------------------------------------------------------------
# the two servers (child processes)
# --------------------------------------------------------------------------------------------------


def _raise_nofile(wanted: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


_CONTROL = None  # the child's original stdout: the control channel to the parent


def _take_stdout() -> None:
    """In a child: keep fd 1 for the parent's control lines; everything else printed goes to the log."""
    global _CONTROL
    _CONTROL = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # structlog prints to stdout by default: send it to stderr (the server log)


def _announce(**data: Any) -> None:
    _CONTROL.write(json.dumps(data) + "\n")
    _CONTROL.flush()


async def _wait_stdin_line() -> str:
    return await asyncio.to_thread(sys.stdin.readline)


async def _child_ivr(args: argparse.Namespace) -> None:
    from ivr.app import start_service
    from ivr.logs import configure_logging
    from ivr.settings import load_settings

    settings = load_settings().replace(
        agi={"host": HOST, "port": 0},
        web={"enabled": False},
        database={"url": args.db_url},
        prompts={"dir": args.prompts_dir},
    )
    configure_logging(settings.log.level, settings.log.json)
    service = await start_service(settings, migrate=False)
    handler = service.agi._routes[SCRIPT]  # read-only peek at the prompt cache counters
    cache = handler._speaker._cache
    _announce(
        port=service.agi.port,
        pid=os.getpid(),
        pool_size=settings.database.pool_size,
        call_deadline=settings.database.call_deadline,
        tts_deadline=settings.prompts.tts_deadline,
    )
    while True:
        line = (await _wait_stdin_line()).strip()
        if line == "stats" or not line or line == "stop":
            _announce(
                cache_hits=cache.hits,
                cache_misses=cache.misses,
                active=service.agi.active_calls,
                ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            )
        if line == "stop" or not line:
            break
    await service.stop(grace=30)
    _announce(stopped=True, ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


async def _child_echo(args: argparse.Namespace) -> None:
    prompt = str(Path(args.prompts_dir) / "echo")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # env block until the empty line
            linkedid = "?"
            script = [
                "ANSWER",
                "GET VARIABLE CHANNEL(linkedid)",
                f"GET DATA {prompt} 6000 1",
                f'STREAM FILE {prompt} ""',
                "SET VARIABLE IVR_RESULT done",
                "SET VARIABLE IVR_REASON order_placed",
                "SET VARIABLE IVR_CUSTOMER_ID echo",
                None,  # IVR_ORDER_ID, filled from the linkedid
            ]
            for command in script:
                if command is None:
                    command = f"SET VARIABLE IVR_ORDER_ID E-{linkedid}"
                writer.write((command + "\n").encode())
                await writer.drain()
                reply = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
                if not reply:
                    return
                if command.startswith("GET VARIABLE") and "(" in reply:
                    linkedid = reply[reply.index("(") + 1 : reply.rindex(")")]
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    server = await asyncio.start_server(on_connection, HOST, 0)  # default backlog, like the ivr server
    _announce(port=server.sockets[0].getsockname()[1], pid=os.getpid())
    while True:
        line = (await _wait_stdin_line()).strip()
        if line == "stats" or not line or line == "stop":
            _announce(
                cache_hits=0, cache_misses=0, active=0, ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            )
        if line == "stop" or not line:
            break
    server.close()
    _announce(stopped=True, ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class ServerProcess:
    """A child server: started, sampled (RSS, CPU, child processes) and stopped by the parent."""

    def __init__(self, kind: str, workdir: Path, *, db_url: str = "", prompts_dir: str = "") -> None:
        self.kind = kind
        self.log_path = workdir / f"server-{kind}-{uuid.uuid4().hex[:6]}.log"
        self.argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--db-url",
            db_url,
            "--prompts-dir",
            prompts_dir,
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self.port = 0
        self.peak_rss = 0
        self.idle_rss = 0
        self.peak_children = 0
        self._sampler: asyncio.Task | None = None
        self._ps = None
        self._log = None

    async def start(self, timeout: float = 60) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            start_new_session=True,
        )
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.kind} server did not start; see {self.log_path}:\n{self.tail_log()}")
        self.info = json.loads(line)
        self.port = int(self.info["port"])
        if psutil is not None:
            self._ps = psutil.Process(self.proc.pid)
            self.idle_rss = self._ps.memory_info().rss

    def start_sampling(self) -> None:
        self.peak_rss = self.idle_rss
        self.cpu_start = self.cpu_seconds()
        if self._ps is not None:
            self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.peak_rss = max(self.peak_rss, self._ps.memory_info().rss)
                self.peak_children = max(self.peak_children, len(self._ps.children()))
            await asyncio.sleep(0.05)

    def stop_sampling(self) -> float:
        if self._sampler is not None:
            self._sampler.cancel()
        return self.cpu_seconds() - self.cpu_start

    def cpu_seconds(self) -> float:
        if self._ps is None:
            return float("nan")
        with contextlib.suppress(Exception):
            t = self._ps.cpu_times()
            return t.user + t.system
        return float("nan")

    async def request(self, command: str, timeout: float = 60) -> dict[str, Any]:
        self.proc.stdin.write((command + "\n").encode())
        await self.proc.stdin.drain()
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                return {}
            data = json.loads(line)
            if "ru_maxrss_kb" in data:
                return data

    async def stop(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.proc is None:
            return result
        try:
            if self.proc.returncode is None:
                result = await self.request("stop", timeout=60)
                # the second line is the one written after service.stop()
                with contextlib.suppress(Exception):
                    line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
                    if line:
                        result.update(json.loads(line))
                await asyncio.wait_for(self.proc.wait(), 30)
        except Exception:
            pass
        finally:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.proc.wait(), 10)
            if self._log is not None:
                self._log.close()
        return result

    def tail_log(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        return ""


# --------------------------------------------------------------------------------------------------
# the load generator (Asterisk's side)
# --------------------------------------------------------------------------------------------------


def env_block(port: int, caller_id: str, uniqueid: str, index: int) -> bytes:
    """The env block a real Asterisk 22 sends (shared/asterisk-traces/agi/*.txt)."""
    env = {
        "network": "yes",
        "network_script": SCRIPT,
        "request": f"agi://{HOST}:{port}/{SCRIPT}",
        "channel": f"PJSIP/trunk-{index:08x}",
        "language": "ru",
        "type": "PJSIP",
        "uniqueid": uniqueid,
        "version": "22.10.1",
        "callerid": caller_id,
        "calleridname": "unknown",
        "callingpres": "0",
        "callingani2": "0",
        "callington": "0",
        "callingtns": "0",
        "dnid": "4951112233",
        "rdnis": "unknown",
        "context": "ivr-inbound",
        "extension": "start",
        "priority": "3",
        "enhanced": "0.0",
        "accountcode": "",
        "threadid": str(140000000000000 + index),
    }
    return "".join(f"agi_{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def verb_of(command: str) -> str:
    words = command.split()
    if not words:
        return "?"
    if len(words) > 1 and words[0].upper() in (
        "GET",
        "SET",
        "STREAM",
        "CONTROL",
        "DATABASE",
        "SAY",
        "CHANNEL",
        "WAIT",
        "RECEIVE",
        "SEND",
        "SPEECH",
        "RECORD",
        "GOSUB",
    ):
        return f"{words[0]} {words[1]}".upper()
    return words[0].upper()


@dataclass
class CallRecord:
    index: int
    caller_id: str
    linkedid: str
    connect_s: float | None = None  # TCP connect duration
    first_prompt_s: float | None = None  # connect start -> first STREAM FILE / GET DATA received
    total_s: float | None = None  # connect start -> socket closed by the server
    think: list[tuple[str, float]] = field(default_factory=list)  # (command received, seconds)
    close_s: float | None = None  # last reply -> EOF
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def result(self) -> str:
        return self.variables.get("IVR_RESULT", "<unset>")


def reply_to(command: str, rec: CallRecord, check_files: bool) -> str:
    from ivr.agi.wire import split_agi_args

    words = split_agi_args(command)
    verb = verb_of(command)
    if verb == "ANSWER":
        return "200 result=0"
    if verb == "GET VARIABLE" and len(words) >= 3:
        name = words[2]
        known = {"CHANNEL(linkedid)": rec.linkedid, "CALLERID(num)": rec.caller_id, **rec.variables}
        return f"200 result=1 ({known[name]})" if name in known else "200 result=0"
    if verb == "SET VARIABLE" and len(words) >= 4:
        rec.variables[words[2]] = words[3]
        return "200 result=1"
    if verb in ("STREAM FILE", "GET DATA") and len(words) >= 3:
        path = words[2]
        if check_files and not os.path.exists(path + ".wav"):
            rec.missing_files.append(path)
            return "200 result=-1 endpos=0"
        if verb == "STREAM FILE":
            return "200 result=0 endpos=8000"
        return "200 result=1"  # the caller pressed 1 (max_digits 1: no timeout suffix)
    if verb == "VERBOSE":
        return "200 result=1"
    if verb in ("NOOP", "EXEC"):
        return "200 result=0"
    if verb == "HANGUP":
        return "200 result=1\nHANGUP"
    return "510 Invalid or unknown command"


async def one_call(
    rec: CallRecord, port: int, go: asyncio.Event, sem: asyncio.Semaphore, idle: float, check_files: bool
) -> None:
    await go.wait()
    async with sem:
        writer = None
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), idle)
            rec.connect_s = time.perf_counter() - t0
            writer.write(env_block(port, rec.caller_id, rec.linkedid, rec.index))
            sent = time.perf_counter()
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), idle)
                except TimeoutError:
                    rec.error = f"idle>{idle:g}s after {rec.commands[-1] if rec.commands else 'env'}"
                    return
                now = time.perf_counter()
                if not line:
                    rec.close_s = now - sent
                    rec.total_s = now - t0
                    return
                command = line.decode("utf-8", "replace").rstrip("\r\n")
                verb = verb_of(command)
                rec.commands.append(command)
                rec.think.append((verb, now - sent))
                if rec.first_prompt_s is None and verb in ("STREAM FILE", "GET DATA"):
                    rec.first_prompt_s = now - t0
                writer.write((reply_to(command, rec, check_files) + "\n").encode())
                sent = time.perf_counter()
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            if writer is not None:
                writer.close()


async def run_load(
    port: int, callers: list[str], *, concurrency: int, idle: float, budget: float, tag: str, check_files: bool = True
) -> tuple[list[CallRecord], float]:
    base = int(time.time())
    records = [CallRecord(i, c, f"{base}.{tag}{i}") for i, c in enumerate(callers)]
    go = asyncio.Event()
    sem = asyncio.Semaphore(concurrency)
    tasks = [asyncio.create_task(one_call(r, port, go, sem, idle, check_files)) for r in records]
    await asyncio.sleep(0)  # every task is parked on the start line
    t0 = time.perf_counter()
    go.set()
    _done, pending = await asyncio.wait(tasks, timeout=max(budget, 1))
    wall = time.perf_counter() - t0
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    for r in records:
        if r.total_s is None and r.error is None:
            r.error = "global deadline"
    return records, wall


# --------------------------------------------------------------------------------------------------
# data: databases, customers, checks
# --------------------------------------------------------------------------------------------------


def write_load_csv(
    directory: Path, count: int, names: int, prefix: str, phone_base: int
) -> tuple[Path, Path, list[str]]:
    customers = directory / f"{prefix}-customers.csv"
    orders = directory / f"{prefix}-orders.csv"
    phones = []
    with customers.open("w", newline="", encoding="utf-8") as fc, orders.open("w", newline="", encoding="utf-8") as fo:
        wc, wo = csv.writer(fc), csv.writer(fo)
        wc.writerow(["customer_id", "last_name", "first_name", "patronymic", "phones", "address", "language"])
        wo.writerow(["order_id", "customer_id", "ordered_at", "sku", "quantity"])
        for i in range(count):
            first, patronymic, last = NAMES[i % names]
            phone = f"+7916{phone_base + i:07d}"
            cid = f"{prefix.upper()}{i:05d}"
            wc.writerow([cid, last, first, patronymic, phone, f"Москва, ул. Нагрузочная, д. {i + 1}", "ru"])
            wo.writerow([f"H-{prefix.upper()}{i:05d}", cid, "2026-10-01T10:00:00", "WATER-19", 2])
            wo.writerow([f"H-{prefix.upper()}{i:05d}", cid, "2026-10-01T10:00:00", "CUPS-100", 1])
            phones.append(phone)
    return customers, orders, phones


async def prepare_database(url: str, workdir: Path, calls: int, names: int) -> dict[str, Any]:
    """Migrate, load the demo data and the load customers; returns callers for warm-up and load."""
    from crm_bridge.db import create_engine, session_factory, upgrade
    from crm_bridge.demo import load_demo_data
    from crm_bridge.importers import import_file

    t0 = time.perf_counter()
    await upgrade(url)
    engine = create_engine(url, pool_size=2)
    try:
        sessions = session_factory(engine)
        demo = await load_demo_data(sessions)
        cust, orders, load_phones = write_load_csv(workdir, calls, names, "l", 5_000_000)
        wcust, worders, warm_phones = write_load_csv(workdir, names, names, "w", 6_000_000)
        reports = [
            await import_file(sessions, "customers", cust),
            await import_file(sessions, "orders", orders),
            await import_file(sessions, "customers", wcust),
            await import_file(sessions, "orders", worders),
        ]
    finally:
        await engine.dispose()
    errors = [f"{e.file}:{e.line}: {e.reason}" for r in [demo, *reports] for e in r.errors]
    if errors:
        raise RuntimeError("import failed: " + "; ".join(errors[:5]))
    return {
        "load": load_phones,
        "warm": warm_phones,
        "setup_s": time.perf_counter() - t0,
        "customers": sum(r.created for r in reports[0::2]),
    }


async def database_check(url: str) -> dict[str, Any]:
    """What the server wrote: ivr orders, their invoices, duplicate keys, call outcomes."""
    from sqlalchemy import text

    from crm_bridge.db import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            orders = (await conn.execute(text("SELECT count(*) FROM orders WHERE source = 'ivr'"))).scalar_one()
            invoices = (
                await conn.execute(
                    text("SELECT count(*) FROM invoices i JOIN orders o ON o.id = i.order_id WHERE o.source = 'ivr'")
                )
            ).scalar_one()
            outcomes = (
                await conn.execute(
                    text(
                        "SELECT coalesce(outcome, '<null>'), coalesce(reason, '<null>'), count(*) FROM calls "
                        "GROUP BY 1, 2 ORDER BY 3 DESC"
                    )
                )
            ).all()
            events = (await conn.execute(text("SELECT count(*) FROM timeline_events"))).scalar_one()
    finally:
        await engine.dispose()
    return {
        "ivr_orders": orders,
        "ivr_invoices": invoices,
        "timeline_events": events,
        "call_outcomes": {f"{o}/{r}": n for o, r, n in outcomes},
    }


@contextlib.asynccontextmanager
async def temporary_pg_database(base_url: str):
    """CREATE DATABASE <unique>, yield its URL, DROP DATABASE ... WITH (FORCE) (like tests/db/fixtures.py)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    base = make_url(base_url)
    name = f"ivr_bench_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


# --------------------------------------------------------------------------------------------------
# statistics and report
# --------------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


LOG_LINE = re.compile(r"\[(warning|error|critical)\s*\]\s+(\S+)")


def scan_log(path: Path, since: int = 0) -> tuple[dict[str, int], dict[str, list[str]], int, int]:
    """Warnings/errors in a server log from byte ``since``: counts per (level event), examples, tracebacks."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    tracebacks = 0
    try:
        with path.open("rb") as fh:
            fh.seek(since)
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return {}, {}, 0, since
    for line in data.splitlines():
        if line.startswith("Traceback"):
            tracebacks += 1
        m = LOG_LINE.search(line)
        if m:
            key = f"{m.group(1)} {m.group(2)}"
            counts[key] += 1
            if len(examples.setdefault(key, [])) < 2:
                examples[key].append(line[:400])
    return dict(counts.most_common()), examples, tracebacks, since + len(data.encode("utf-8"))


def summarize(
    name: str,
    records: list[CallRecord],
    wall: float,
    server: ServerProcess,
    cpu_s: float,
    child_stats: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    completed = [r for r in records if r.error is None]
    think = [t for r in completed for _, t in r.think]
    by_verb: dict[str, list[float]] = {}
    for r in completed:
        for i, (verb, t) in enumerate(r.think):
            label = (
                verb if verb != "SET VARIABLE" else f"SET VARIABLE #{sum(1 for v, _ in r.think[:i] if v == verb) + 1}"
            )
            by_verb.setdefault(label, []).append(t)
        if r.close_s is not None:
            by_verb.setdefault("<close>", []).append(r.close_s)
    first = [r.first_prompt_s for r in completed if r.first_prompt_s is not None]
    totals = [r.total_s for r in completed if r.total_s is not None]
    connects = [r.connect_s for r in records if r.connect_s is not None]
    results = Counter(f"{r.result}/{r.variables.get('IVR_REASON', '<unset>')}" for r in completed)
    done = sum(1 for r in completed if r.result == "done")
    no_readback = sum(
        1 for r in completed if r.result == "done" and not any(c.upper().startswith("STREAM FILE") for c in r.commands)
    )
    errors = Counter(r.error for r in records if r.error is not None)
    ncmds = Counter(len(r.commands) for r in completed)
    return {
        "name": name,
        "calls": len(records),
        "completed": len(completed),
        "failed": len(records) - len(completed),
        "done": done,
        "not_done": len(completed) - done,
        "done_without_readback": no_readback,
        "missing_prompt_files": sum(len(r.missing_files) for r in completed),
        "results": dict(results.most_common()),
        "client_errors": dict(errors.most_common()),
        "commands_per_call": dict(sorted(ncmds.items())),
        "wall_s": round(wall, 3),
        "calls_per_s": round(len(completed) / wall, 1) if wall > 0 else None,
        "done_per_s": round(done / wall, 1) if wall > 0 else None,
        "think_ms": {
            "p50": ms(pct(think, 50)),
            "p99": ms(pct(think, 99)),
            "max": ms(max(think, default=None)),
            "n": len(think),
        },
        "think_ms_by_command": {
            k: {"p50": ms(pct(v, 50)), "p99": ms(pct(v, 99)), "max": ms(max(v))} for k, v in by_verb.items()
        },
        "first_prompt_ms": {"p50": ms(pct(first, 50)), "p99": ms(pct(first, 99)), "max": ms(max(first, default=None))},
        "connect_ms": {
            "p50": ms(pct(connects, 50)),
            "p99": ms(pct(connects, 99)),
            "max": ms(max(connects, default=None)),
        },
        "call_ms": {"p50": ms(pct(totals, 50)), "p99": ms(pct(totals, 99)), "max": ms(max(totals, default=None))},
        "server_peak_rss_mb": round(server.peak_rss / 2**20, 1) if server.peak_rss else None,
        "server_idle_rss_mb": round(server.idle_rss / 2**20, 1) if server.idle_rss else None,
        "server_ru_maxrss_mb": round(child_stats.get("ru_maxrss_kb", 0) / 1024, 1) or None,
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_ms_per_call": round(cpu_s * 1000 / max(len(completed), 1), 2),
        "server_peak_child_processes": server.peak_children,
        "prompt_cache": {"hits": child_stats.get("cache_hits"), "misses": child_stats.get("cache_misses")},
        **extra,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def add_ratios(run: dict[str, Any], echo: dict[str, Any] | None) -> None:
    if echo is None or run is echo:
        return
    run["vs_echo"] = {
        "calls_per_s": ratio(run["calls_per_s"], echo["calls_per_s"]),
        "think_p50": ratio(run["think_ms"]["p50"], echo["think_ms"]["p50"]),
        "think_p99": ratio(run["think_ms"]["p99"], echo["think_ms"]["p99"]),
        "first_prompt_p50": ratio(run["first_prompt_ms"]["p50"], echo["first_prompt_ms"]["p50"]),
        "first_prompt_p99": ratio(run["first_prompt_ms"]["p99"], echo["first_prompt_ms"]["p99"]),
        "server_peak_rss": ratio(run["server_peak_rss_mb"], echo["server_peak_rss_mb"]),
        "server_cpu": ratio(run["server_cpu_s"], echo["server_cpu_s"]),
    }


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def print_table(runs: list[dict[str, Any]]) -> None:
    head = [
        "run",
        "ok/fail",
        "done",
        "calls/s",
        "think p50/p99 ms",
        "1st prompt p50/p99 ms",
        "call p50/p99 ms",
        "peak RSS MB",
        "CPU s",
    ]
    rows = []
    for r in runs:
        rows.append(
            [
                r["name"],
                f"{r['completed']}/{r['failed']}",
                str(r["done"]),
                fmt(r["calls_per_s"]),
                f"{fmt(r['think_ms']['p50'])}/{fmt(r['think_ms']['p99'])}",
                f"{fmt(r['first_prompt_ms']['p50'])}/{fmt(r['first_prompt_ms']['p99'])}",
                f"{fmt(r['call_ms']['p50'])}/{fmt(r['call_ms']['p99'])}",
                fmt(r["server_peak_rss_mb"]),
                fmt(r["server_cpu_s"]),
            ]
        )
        if "vs_echo" in r:
            v = r["vs_echo"]
            rows.append(
                [
                    "  x echo",
                    "",
                    "",
                    fmt(v["calls_per_s"]),
                    f"{fmt(v['think_p50'])}/{fmt(v['think_p99'])}",
                    f"{fmt(v['first_prompt_p50'])}/{fmt(v['first_prompt_p99'])}",
                    "",
                    fmt(v["server_peak_rss"]),
                    fmt(v["server_cpu"]),
                ]
            )
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    line = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))  # noqa: E731
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    for r in runs:
        print(f"\n{r['name']}: results {r['results']}")
        if r["client_errors"]:
            print(f"  client errors: {r['client_errors']}")
        if r.get("done_without_readback"):
            print(f"  done WITHOUT the order read-back (no STREAM FILE): {r['done_without_readback']}")
        if r.get("missing_prompt_files"):
            print(f"  prompt files missing when Asterisk would play them: {r['missing_prompt_files']}")
        by = r["think_ms_by_command"]
        print(
            "  think by command (p50/p99/max ms): "
            + ", ".join(f"{k} {fmt(v['p50'])}/{fmt(v['p99'])}/{fmt(v['max'])}" for k, v in by.items())
        )
        extra = {
            k: r[k]
            for k in (
                "prompt_cache",
                "server_cpu_ms_per_call",
                "server_peak_child_processes",
                "server_ru_maxrss_mb",
                "connect_ms",
                "db_check",
            )
            if k in r
        }
        print(f"  {json.dumps(extra, ensure_ascii=False)}")
        if r.get("server_log_problems"):
            print(f"  server log warnings/errors: {r['server_log_problems']}")
            for key, lines in r.get("server_log_examples", {}).items():
                for ex in lines[:1]:
                    print(f"    {key}: {ex}")


# --------------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


async def run_echo(args: argparse.Namespace, workdir: Path, deadline: Deadline) -> dict[str, Any]:
    prompts = workdir / "echo-prompts"
    prompts.mkdir()
    (prompts / "echo.wav").write_bytes(b"RIFF" + b"\0" * 40)
    server = ServerProcess("echo", workdir, prompts_dir=str(prompts))
    await server.start()
    try:
        callers = [f"+7916{7_000_000 + i:07d}" for i in range(args.calls)]
        server.start_sampling()
        records, wall = await run_load(
            server.port,
            callers,
            concurrency=args.concurrency,
            idle=args.call_timeout,
            budget=min(deadline.left() - 30, args.run_timeout),
            tag="e",
        )
        cpu = server.stop_sampling()
        stats = await server.request("stats")
    finally:
        await server.stop()
    return summarize("echo baseline", records, wall, server, cpu, stats, {})


async def run_ivr(
    args: argparse.Namespace, backend: str, url: str, workdir: Path, deadline: Deadline, *, cold: bool
) -> dict[str, Any]:
    name = f"ivr {backend} {'cold' if cold else 'warm'}"
    data = await prepare_database(url, workdir, args.calls, args.names)
    prompts = workdir / f"prompts-{backend}-{'cold' if cold else 'warm'}"
    server = ServerProcess("ivr", workdir, db_url=url, prompts_dir=str(prompts))
    await server.start()
    extra: dict[str, Any] = {
        "backend": backend,
        "cache": "cold" if cold else "warm",
        "setup_s": round(data["setup_s"], 2),
        "server_settings": {k: server.info.get(k) for k in ("pool_size", "call_deadline", "tts_deadline")},
    }
    try:
        if not cold:
            # One call per distinct greeting (customers sharing a name and an order hear the same file).
            t0 = time.perf_counter()
            warm, _ = await run_load(
                server.port,
                data["warm"],
                concurrency=len(data["warm"]),
                idle=args.call_timeout,
                budget=min(deadline.left() - 30, 120),
                tag="w",
            )
            extra["warmup"] = {
                "calls": len(warm),
                "done": sum(1 for r in warm if r.result == "done"),
                "seconds": round(time.perf_counter() - t0, 2),
                "results": dict(Counter(r.result for r in warm)),
            }
            extra["prompt_cache_after_warmup"] = await server.request("stats")
        log_mark = server.log_path.stat().st_size
        server.start_sampling()
        records, wall = await run_load(
            server.port,
            data["load"],
            concurrency=args.concurrency,
            idle=args.call_timeout,
            budget=min(deadline.left() - 30, args.run_timeout),
            tag="c" if cold else "l",
        )
        cpu = server.stop_sampling()
        stats = await server.request("stats")
        if not cold and extra.get("prompt_cache_after_warmup"):
            w = extra["prompt_cache_after_warmup"]
            stats = {
                **stats,
                "cache_hits": stats["cache_hits"] - w["cache_hits"],
                "cache_misses": stats["cache_misses"] - w["cache_misses"],
            }
    finally:
        stopped = await server.stop()  # waits for the calls' end records (grace 30 s)
    counts, examples, tracebacks, _ = scan_log(server.log_path, log_mark if "log_mark" in locals() else 0)
    extra["server_log_problems"] = counts
    extra["server_log_examples"] = examples
    extra["server_log_tracebacks"] = tracebacks
    extra["server_log"] = str(server.log_path)
    extra["server_stop"] = stopped
    extra["db_check"] = await database_check(url)
    return summarize(name, records, wall, server, cpu, stats, extra)


async def run_backend(args: argparse.Namespace, backend: str, workdir: Path, deadline: Deadline) -> list[dict]:
    out = []
    for cold in [False, True] if args.cold else [False]:
        if deadline.left() < 60:
            print(f"skipping {backend} {'cold' if cold else 'warm'}: global deadline close", file=sys.stderr)
            continue
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir}/bench-{'cold' if cold else 'warm'}.sqlite3"
            out.append(await run_ivr(args, backend, url, workdir, deadline, cold=cold))
        else:
            async with temporary_pg_database(args.pg_url) as url:
                out.append(await run_ivr(args, backend, url, workdir, deadline, cold=cold))
        r = out[-1]
        print(
            f"[{r['name']}] {r['completed']}/{r['calls']} completed, {r['done']} done, "
            f"{r['calls_per_s']} calls/s, {r['wall_s']} s",
            file=sys.stderr,
        )
    return out


async def main_async(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    deadline = Deadline(args.deadline)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends:
        host = make_url(args.pg_url).host or "127.0.0.1"
        if host not in LOCAL_PG_HOSTS:
            print(f"refusing a non-local PostgreSQL host {host!r}: this benchmark stays on 127.0.0.1", file=sys.stderr)
            return 2
    nofile = _raise_nofile(args.concurrency * 2 + 1024)
    started = datetime.now(UTC)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
        workdir = Path(tmp)
        try:
            async with asyncio.timeout(args.deadline):
                echo = await run_echo(args, workdir, deadline)
                runs.append(echo)
                print(
                    f"[echo] {echo['completed']}/{echo['calls']} completed, {echo['calls_per_s']} calls/s",
                    file=sys.stderr,
                )
                for backend in backends:
                    runs.extend(await run_backend(args, backend, workdir, deadline))
        except TimeoutError:
            print(f"global deadline of {args.deadline} s reached; reporting what finished", file=sys.stderr)
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("server-*.log"):
                shutil.copy(log, keep / log.name)
    for r in runs:
        add_ratios(r, runs[0] if runs and runs[0]["name"] == "echo baseline" else None)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30, 1) if psutil else '?'} GiB RAM, {platform.platform()}",
        "python": platform.python_version(),
        "calls": args.calls,
        "concurrency": args.concurrency,
        "rlimit_nofile": nofile,
        "setup": "server in a child process (start_service, web disabled); load generator in this process",
        "media": "answered immediately (no playback time)",
        "load_generator_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "elapsed_s": round(args.deadline - deadline.left(), 1),
    }
    print(
        f"\n{meta['date']}  {meta['machine']}  python {meta['python']}  "
        f"{args.calls} calls, concurrency {args.concurrency}\n"
    )
    if runs:
        print_table(runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": runs}, ensure_ascii=False, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    bad = any(r["failed"] or r["not_done"] for r in runs)
    return 1 if bad or not runs else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--calls", type=int, default=1000, help="calls per run (default 1000)")
    p.add_argument("--concurrency", type=int, default=None, help="calls in flight at once (default: all of them)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get(PG_ENV) or PG_DEFAULT,
        help=f"PostgreSQL server for a throw-away database (default ${PG_ENV} or {PG_DEFAULT})",
    )
    p.add_argument("--deadline", type=float, default=300.0, help="global deadline in seconds (default 300)")
    p.add_argument("--run-timeout", type=float, default=120.0, help="cap on one load run (default 120 s)")
    p.add_argument(
        "--call-timeout",
        type=float,
        default=60.0,
        help="a call fails if the server says nothing for this long (default 60 s)",
    )
    p.add_argument("--names", type=int, default=10, help=f"distinct greeting names, 1..{len(NAMES)} (default 10)")
    p.add_argument(
        "--cold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run with an empty prompt cache on a fresh database (default on)",
    )
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--keep-logs", help="copy the servers' logs to this directory")
    p.add_argument("--child", choices=["ivr", "echo"], help=argparse.SUPPRESS)
    p.add_argument("--db-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--prompts-dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = args.calls
    if not 1 <= args.names <= len(NAMES):
        p.error(f"--names must be within 1..{len(NAMES)}")
    if args.calls < 1 or args.calls > 20000 or args.concurrency < 1:
        p.error("--calls must be within 1..20000 and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        _take_stdout()
        _raise_nofile(20000)
        asyncio.run(_child_ivr(args) if args.child == "ivr" else _child_echo(args))
        return 0
    from ivr.logs import configure_logging

    configure_logging("WARNING")  # the importers' info lines would bury the report
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
