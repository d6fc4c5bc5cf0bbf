"""FastAGI load benchmark: repeat-order calls against an ivr server, beside an echo floor, one table.

    .venv/bin/python bench/agi_load.py --all                      # every goal of issue 7 (see bench/README.md)
    .venv/bin/python bench/agi_load.py --backend sqlite --rate 20 --duration 5
    .venv/bin/python bench/agi_load.py --backend postgres --find-ceiling --hold 2000 --workers 2

What runs where
---------------
* The server under test runs in its own process group: the bench's own child (``--child ivr``, which
  calls ``ivr.app.start_service``: web disabled, AGI on 127.0.0.1 with an ephemeral port) or, with
  ``--workers N``, ``python -m ivr serve --workers N`` configured through IVR_* variables. A fresh
  database (demo data + generated load customers) and an empty prompts dir per server.
* The floor is a trivial echo FastAGI server (``--child echo``) sending the same 8 commands, measured
  with the same load in the same run; ratios are against it.
* The load generator (this process, one asyncio loop) plays Asterisk 22 byte for byte; media is
  answered at once (the worst case). Loads: burst (``--calls``/``--concurrency``), open loop
  (``--rate``/``--duration``: call i starts at i/rate whatever the others do), ceiling steps
  (``--find-ceiling``), held-open calls (``--hold``: replies to GET DATA wait until all N sit in it).
* Server numbers: CPU of the server's processes including their reaped children (the TTS programs),
  RSS of its Python processes (psutil), programs started (``bench/probe/sitecustomize.py``, an audit
  hook on subprocess.Popen, exact). Database check per run: call rows with an outcome and a timeline
  from call.started to call.ended, orders.

Bounded: connects only to 127.0.0.1 (and a PostgreSQL on localhost), a global deadline over
everything (``--deadline``), a per-command idle limit per call.
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
import subprocess
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
    from ivr.app import Seams, start_service
    from ivr.logs import configure_logging
    from ivr.settings import load_settings

    settings = load_settings().replace(
        agi={"host": HOST, "port": 0, "drain_seconds": 30},
        web={"enabled": False},
        database={"url": args.db_url},
        prompts={"dir": args.prompts_dir, "calls_dir": args.calls_dir},
    )
    configure_logging(settings.log.level, settings.log.json)
    seams = Seams()
    if os.environ.get("IVR_BENCH_CRM_TARGETS"):  # --crm: three CRM targets, one of them down
        from bench.crm_receivers import build_targets

        seams = Seams(crm_targets=build_targets(os.environ["IVR_BENCH_CRM_TARGETS"]))
    service = await start_service(settings, migrate=False, seams=seams)
    # The prompt cache counters, for the details only: the table's TTS count comes from the spawn probe.
    cache = service.prompt_cache
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
                cache_hits=getattr(cache, "hits", None),
                cache_misses=getattr(cache, "misses", None),
                active=service.agi.active_calls,
                ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            )
        if line == "stop" or not line:
            break
    await service.stop()
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


PROBE_DIR = Path(__file__).resolve().parent / "probe"  # sitecustomize.py: counts the server's subprocesses
TTS_PROGRAMS = {"espeak-ng", "espeak", "text2wave", "festival"}


def _probe_env(spawn_log: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server under test: the spawn probe first on PYTHONPATH, then the repo."""
    env = dict(os.environ)
    path = [str(PROBE_DIR), str(ROOT)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["IVR_BENCH_SPAWN_LOG"] = str(spawn_log)
    env.update(extra or {})
    return env


def _proc_cpu(p: Any) -> float:
    """CPU seconds of a process plus its reaped children (espeak-ng's CPU lands there once waited for)."""
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class ServerProcess:
    """A server under test in its own process group: started, sampled (RSS, CPU, spawned programs), stopped.

    RSS and CPU are summed over the Python processes of the tree (one, or a supervisor and its
    workers); the TTS programs they run count in CPU (reaped children) but not in RSS.
    """

    has_workers = False  # the bench's own child runs the service in one process

    def __init__(
        self, kind: str, workdir: Path, *, db_url: str = "", prompts_dir: str = "", calls_dir: str = ""
    ) -> None:
        self.kind = kind
        tag = uuid.uuid4().hex[:6]
        self.log_path = workdir / f"server-{kind}-{tag}.log"
        self.spawn_log = workdir / f"spawns-{kind}-{tag}.log"
        self.argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--db-url",
            db_url,
            "--prompts-dir",
            prompts_dir,
            "--calls-dir",
            calls_dir,
        ]
        self.env = _probe_env(self.spawn_log)
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self.port = 0
        self.peak_rss = 0
        self.idle_rss = 0
        self.peak_children = 0
        self._sampler: asyncio.Task | None = None
        self._ps = None
        self._log = None
        self._cpu0: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._spawn_mark = 0

    async def start(self, timeout: float = 60) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            env=self.env,
            start_new_session=True,
        )
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.kind} server did not start; see {self.log_path}:\n{self.tail_log()}")
        self.info = json.loads(line)
        self.port = int(self.info["port"])
        self._attach()

    def _attach(self) -> None:
        if psutil is not None:
            self._ps = psutil.Process(self.proc.pid)
            self.idle_rss = self.rss()

    def _tree(self) -> list[Any]:
        """The server's own processes: the root and its Python children (the workers of ``--workers N``).

        Grandchildren are never counted: they are the TTS programs the workers start, and between fork
        and exec such a child still looks like a Python process with the parent's whole RSS.
        """
        if self._ps is None:
            return []
        procs = [self._ps]
        if self.has_workers:
            with contextlib.suppress(Exception):
                procs += [c for c in self._ps.children() if c.name().startswith("python")]
        return procs

    def rss(self) -> int:
        total = 0
        for p in self._tree():
            with contextlib.suppress(Exception):
                total += p.memory_info().rss
        return total

    def _cpu_by_pid(self) -> dict[int, float]:
        out = {}
        for p in self._tree():
            with contextlib.suppress(Exception):
                out[p.pid] = _proc_cpu(p)
        return out

    def start_sampling(self) -> None:
        self.idle_rss = self.rss()
        self.peak_rss = self.idle_rss
        self.peak_children = 0
        self._cpu0 = self._cpu_by_pid()
        self._cpu_last = dict(self._cpu0)
        self._spawn_mark = self.spawn_log.stat().st_size if self.spawn_log.exists() else 0
        if self._ps is not None:
            self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.peak_rss = max(self.peak_rss, self.rss())
                self.peak_children = max(self.peak_children, len(self._ps.children(recursive=True)))
                self._cpu_last.update(self._cpu_by_pid())  # a worker that dies keeps its last reading
            await asyncio.sleep(0.05)

    def stop_sampling(self) -> float:
        """Stop sampling; CPU seconds the server's processes used since start_sampling."""
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if self._ps is None:
            return float("nan")
        self._cpu_last.update(self._cpu_by_pid())
        return sum(v - self._cpu0.get(pid, 0.0) for pid, v in self._cpu_last.items())

    def spawns(self) -> Counter[str]:
        """Programs started by the server since start_sampling, by name (from the spawn probe)."""
        try:
            with self.spawn_log.open("rb") as fh:
                fh.seek(self._spawn_mark)
                data = fh.read().decode("utf-8", "replace")
        except OSError:
            return Counter()
        return Counter(line.split(" ", 1)[1] for line in data.splitlines() if " " in line)

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
            await self._reap()
        return result

    async def _reap(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 10)
        if self._log is not None:
            self._log.close()

    def tail_log(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        return ""


class CliServerProcess(ServerProcess):
    """``python -m ivr serve --workers N`` configured through IVR_* variables, as an operator runs it.

    There is no control channel: it is ready when its port accepts connections, stopped with SIGTERM
    (the supervisor forwards it to the workers), and the prompt-cache counters are not available.
    """

    has_workers = True

    def __init__(self, workdir: Path, *, db_url: str, prompts_dir: str, workers: int, calls_dir: str = "") -> None:
        super().__init__(f"serve-w{workers}", workdir)
        self.port = _free_port()
        self.argv = [sys.executable, "-m", "ivr", "serve", "--workers", str(workers)]
        self.env = _probe_env(
            self.spawn_log,
            {
                "IVR_AGI__HOST": HOST,
                "IVR_AGI__PORT": str(self.port),
                "IVR_WEB__ENABLED": "false",
                "IVR_DATABASE__URL": db_url,
                "IVR_PROMPTS__DIR": prompts_dir,
                "IVR_PROMPTS__CALLS_DIR": calls_dir,
            },
        )

    async def start(self, timeout: float = 60) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            cwd=str(ROOT),
            env=self.env,
            start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.returncode is not None:
                raise RuntimeError(f"`ivr serve` exited with {self.proc.returncode}:\n{self.tail_log(5)}")
            try:
                _r, w = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 1)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            w.close()  # the server sees a peer that closed before its env block: logged, no call
            break
        else:
            await self._reap()
            raise RuntimeError(f"`ivr serve` did not listen on {self.port} within {timeout} s")
        self.info = {"port": self.port, "pid": self.proc.pid, "argv": self.argv[1:]}
        # the workers are up once the port answers; give every worker the chance to bind too
        if psutil is not None:
            for _ in range(50):
                if len(psutil.Process(self.proc.pid).children()) >= 1:
                    break
                await asyncio.sleep(0.1)
        self._attach()

    async def request(self, command: str, timeout: float = 60) -> dict[str, Any]:
        return {}

    async def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {}
        try:
            if self.proc.returncode is None:
                self.proc.send_signal(signal.SIGTERM)  # the supervisor forwards it to its workers
                await asyncio.wait_for(self.proc.wait(), 60)
        except Exception:
            pass
        finally:
            await self._reap()
        return {"returncode": self.proc.returncode}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


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
    late_s: float | None = None  # paced runs: how late the generator started this call (it must keep up)
    connect_s: float | None = None  # TCP connect duration
    first_prompt_s: float | None = None  # connect start -> first STREAM FILE / GET DATA received
    result_s: float | None = None  # connect start -> SET VARIABLE IVR_RESULT received
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

    @property
    def reason(self) -> str:
        return self.variables.get("IVR_REASON", "<unset>")


def _sets_result(command: str) -> bool:
    """SET VARIABLE IVR_RESULT … or EXEC MSet IVR_RESULT=…,… (quoted or not)."""
    from ivr.agi.wire import split_agi_args

    words = split_agi_args(command)
    if verb_of(command) == "SET VARIABLE":
        return len(words) > 2 and words[2] == "IVR_RESULT"
    return verb_of(command) == "EXEC" and len(words) > 2 and words[1].lower() == "mset" and "IVR_RESULT=" in words[2]


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
    if verb == "EXEC" and len(words) >= 3 and words[1].lower() == "mset":  # name=value,name=value
        for pair in words[2].split(","):
            name, _, value = pair.partition("=")
            rec.variables[name] = value
        return "200 result=0"
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


class InFlight:
    """Calls connected and not yet closed, and the most at once (the denominator of RSS per call)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


# A held call is answered after this long at most: the server waits for a GET DATA reply for the prompt's
# length + its 6 s timeout + agi.media_slack (30 s), so 33 s never makes the server give up on a call.
HOLD_MAX_WAIT = 33.0


class HoldGate:
    """Held-open calls: every call's first GET DATA reply waits until ``target`` calls sit in GET DATA.

    Then the parent samples the server's RSS and releases the calls at ``release_rate`` per second, in
    the order they arrived (all at once would turn the end of the test into a burst of orders). A call
    that has waited ``max_wait`` seconds is answered anyway: the server gives GET DATA its prompt length
    + timeout + 30 s media slack, so the wait stays below that and the server fails no call for it.
    """

    def __init__(self, target: int, max_wait: float, release_rate: float) -> None:
        self.target = target
        self.max_wait = max_wait
        self.release_rate = release_rate
        self.held = 0
        self.peak_held = 0
        self.all_held = asyncio.Event()
        self._waiting: list[asyncio.Future[None]] = []

    async def hold(self) -> None:
        self.held += 1
        self.peak_held = max(self.peak_held, self.held)
        if self.held >= self.target:
            self.all_held.set()
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(turn, self.max_wait)
        except TimeoutError:
            pass
        finally:
            self.held -= 1

    async def release(self) -> None:
        """Answer the held calls in arrival order, paced; later arrivals pass straight through."""
        self.max_wait = 0  # a call reaching GET DATA from now on is not held
        start = time.perf_counter()
        for i, turn in enumerate(list(self._waiting)):
            await asyncio.sleep(max(0.0, start + i / self.release_rate - time.perf_counter()))
            if not turn.done():
                turn.set_result(None)
        self._waiting.clear()


async def one_call(
    rec: CallRecord,
    port: int,
    go: asyncio.Event,
    sem: asyncio.Semaphore | None,
    idle: float,
    check_files: bool,
    *,
    start_at: float | None = None,
    inflight: InFlight | None = None,
    gate: HoldGate | None = None,
) -> None:
    await go.wait()
    if start_at is not None:  # open loop: the call arrives at its time, whatever the others are doing
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        rec.late_s = time.perf_counter() - start_at
    async with sem if sem is not None else contextlib.nullcontext():
        writer = None
        t0 = time.perf_counter()
        held = False
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), idle)
            rec.connect_s = time.perf_counter() - t0
            if inflight is not None:
                inflight.enter()
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
                if rec.result_s is None and _sets_result(command):
                    rec.result_s = now - t0
                if gate is not None and verb == "GET DATA" and not held:
                    held = True
                    await gate.hold()  # the caller "listens" until the gate opens
                writer.write((reply_to(command, rec, check_files) + "\n").encode())
                sent = time.perf_counter()
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            if writer is not None:
                writer.close()
                if inflight is not None:
                    inflight.leave()


@dataclass
class Load:
    """How calls arrive: all at once with at most ``concurrency`` in flight (burst), or ``rate`` per second."""

    calls: int
    concurrency: int | None = None
    rate: float | None = None
    hold: HoldGate | None = None


async def run_load(
    port: int,
    callers: list[str],
    load: Load,
    *,
    idle: float,
    budget: float,
    tag: str,
    check_files: bool = True,
    inflight: InFlight | None = None,
) -> tuple[list[CallRecord], float, InFlight]:
    base = int(time.time())
    # call ids "<epoch>.<tag>x<n>": a run's calls are found in the database by the prefix "<epoch>.<tag>x"
    records = [CallRecord(i, callers[i % len(callers)], f"{base}.{tag}x{i}") for i in range(load.calls)]
    go = asyncio.Event()
    sem = asyncio.Semaphore(load.concurrency) if load.concurrency else None
    inflight = inflight or InFlight()
    t0 = time.perf_counter() + 0.05  # every task is parked on the start line before the first arrival
    tasks = [
        asyncio.create_task(
            one_call(
                r,
                port,
                go,
                sem,
                idle,
                check_files,
                start_at=t0 + r.index / load.rate if load.rate else None,
                inflight=inflight,
                gate=load.hold,
            )
        )
        for r in records
    ]
    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    t0 = time.perf_counter() if not load.rate else t0
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
    return records, wall, inflight


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


async def records_check(url: str, prefix: str, calls: int, *, settle: float = 30.0) -> dict[str, Any]:
    """Of one run's calls (ids starting with ``prefix``): how many have their row with an outcome and a
    timeline from call.started to call.ended, and how many orders ivr placed for them.

    The writer may still be committing when the last call closes: poll until every call is complete, or
    the count stops moving for 5 s, or ``settle`` seconds pass; the report says how long it took.
    """
    from sqlalchemy import text

    from crm_bridge.db import create_engine

    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = text(
        "SELECT "
        "(SELECT count(*) FROM calls WHERE call_id LIKE :p ESCAPE '\\'), "
        "(SELECT count(*) FROM calls c WHERE c.call_id LIKE :p ESCAPE '\\' AND c.outcome IS NOT NULL "
        " AND EXISTS (SELECT 1 FROM timeline_events t WHERE t.call_id = c.call_id AND t.kind = 'call.started') "
        " AND EXISTS (SELECT 1 FROM timeline_events t WHERE t.call_id = c.call_id AND t.kind = 'call.ended')), "
        "(SELECT count(*) FROM orders WHERE call_id LIKE :p ESCAPE '\\'), "
        "(SELECT count(*) FROM timeline_events WHERE call_id LIKE :p ESCAPE '\\')"
    )
    engine = create_engine(url, pool_size=1)
    t0 = time.monotonic()
    last: tuple[int, ...] = ()
    stable_since = t0
    try:
        while True:
            async with engine.connect() as conn:
                row = tuple((await conn.execute(query, {"p": like})).one())
            now = time.monotonic()
            if row != last:
                last, stable_since = row, now
            if row[1] >= calls or now - stable_since >= 5 or now - t0 >= settle:
                break
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()
    rows, complete, orders, events = last
    return {
        "call_rows": rows,
        "complete": complete,
        "complete_pct": round(100 * complete / calls, 2) if calls else None,
        "orders_in_db": orders,
        "timeline_events": events,
        "settled_after_s": round(time.monotonic() - t0, 2),
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
    inflight: InFlight | None = None,
) -> dict[str, Any]:
    completed = [r for r in records if r.error is None]
    placed = sum(1 for r in completed if r.result == "done" and r.reason == "order_placed")
    overloaded = [r.result_s for r in completed if r.reason == "overloaded" and r.result_s is not None]
    late = [r.late_s for r in records if r.late_s is not None]
    spawns = server.spawns()
    tts = sum(n for name, n in spawns.items() if name in TTS_PROGRAMS)
    peak_inflight = inflight.peak if inflight is not None else 0
    rss_growth = max(server.peak_rss - server.idle_rss, 0)
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
        "server_cpu_ms_per_call": round(cpu_s * 1000 / max(len(completed), 1), 2),  # incl. its TTS children
        "server_peak_child_processes": server.peak_children,
        "prompt_cache": {"hits": child_stats.get("cache_hits"), "misses": child_stats.get("cache_misses")},
        "orders_placed": placed,
        "orders_placed_pct": round(100 * placed / len(records), 2) if records else None,
        "overloaded": len(overloaded),
        "overloaded_answer_ms": {
            "p50": ms(pct(overloaded, 50)),
            "p99": ms(pct(overloaded, 99)),
            "max": ms(max(overloaded, default=None)),
        },
        "arrival_late_ms": {"p99": ms(pct(late, 99)), "max": ms(max(late, default=None))} if late else None,
        "spawned": dict(spawns.most_common()),
        "tts_runs": tts,
        "tts_per_call": round(tts / len(records), 3) if records else None,
        "peak_in_flight": peak_inflight,
        "rss_growth_mb": round(rss_growth / 2**20, 1),
        # Only with enough calls at once for the growth to be theirs and not the allocator's noise;
        # the held-open scenario (--hold) is the measurement meant for this column.
        "rss_per_call_kb": round(rss_growth / 1024 / peak_inflight, 1) if peak_inflight >= 50 else None,
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
        "cpu_ms_per_call": ratio(run["server_cpu_ms_per_call"], echo["server_cpu_ms_per_call"]),
        "rss_per_call": ratio(run.get("rss_per_call_kb"), echo.get("rss_per_call_kb")),
    }


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


TABLE_HEAD = [
    "server",
    "load",
    "calls",
    "calls/s",
    "think p50/p99 ms",
    "think p99 ×echo",
    "1st prompt p50/p99 ms",
    "CPU ms/call",
    "TTS procs/call",
    "orders placed %",
    "records complete %",
    "RSS/call KB",
    "overloaded (p99 ms)",
    "load avg start→end",
]


def table_row(r: dict[str, Any]) -> list[str]:
    rec = r.get("records") or {}
    over = f"{r['overloaded']} ({fmt(r['overloaded_answer_ms']['p99'])})" if r["overloaded"] else "0"
    return [
        r["server"],
        r["scenario"],
        f"{r['completed']}/{r['calls']}",
        fmt(r["calls_per_s"]),
        f"{fmt(r['think_ms']['p50'])} / {fmt(r['think_ms']['p99'])}",
        fmt((r.get("vs_echo") or {}).get("think_p99")),
        f"{fmt(r['first_prompt_ms']['p50'])} / {fmt(r['first_prompt_ms']['p99'])}",
        fmt(r["server_cpu_ms_per_call"]),
        fmt(r["tts_per_call"]),
        fmt(r["orders_placed_pct"]) if r["server"] != "echo" else "(echo)",
        fmt(rec.get("complete_pct")),
        rss_cell(r),
        over,
        f"{r['loadavg_start'][0]:.2f} → {r['loadavg_end'][0]:.2f}",
    ]


def rss_cell(r: dict[str, Any]) -> str:
    """RSS per call; for a hold run that did not get every call into GET DATA, how many it held."""
    held = r.get("held")
    if held and held["held"] < held["target"]:
        return f"{fmt(r['rss_per_call_kb'])} ({held['held']}/{held['target']} held)"
    return fmt(r["rss_per_call_kb"])


def markdown_table(runs: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEAD) + " |", "|" + " --- |" * len(TABLE_HEAD)]
    lines += ["| " + " | ".join(table_row(r)) + " |" for r in runs]
    return "\n".join(lines)


def print_details(runs: list[dict[str, Any]]) -> None:
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
        keys = (
            "spawned",
            "prompt_cache",
            "peak_in_flight",
            "held",
            "rss_growth_mb",
            "server_idle_rss_mb",
            "server_peak_rss_mb",
            "arrival_late_ms",
            "connect_ms",
            "records",
        )
        print(f"  {json.dumps({k: r[k] for k in keys if r.get(k) is not None}, ensure_ascii=False)}")
        if r.get("server_log_problems"):
            print(f"  server log warnings/errors: {r['server_log_problems']}")
            for key, lines in r.get("server_log_examples", {}).items():
                for ex in lines[:1]:
                    print(f"    {key}: {ex}")


# --------------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------------

# The ceiling: the highest rate with >= 99 % of orders placed and first-prompt p99 <= 150 ms.
CEILING_ORDERS_PCT = 99.0
CEILING_FIRST_PROMPT_P99_MS = 150.0


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


@dataclass(frozen=True)
class Scenario:
    """One load shape run against a server: burst (calls, concurrency), paced (rate, calls) or hold."""

    key: str
    calls: int
    concurrency: int | None = None
    rate: float | None = None
    hold: bool = False
    ceiling_step: bool = False

    def load(self, hold_wait: float) -> Load:
        gate = HoldGate(self.calls, max_wait=hold_wait, release_rate=self.rate or 100.0) if self.hold else None
        return Load(self.calls, concurrency=self.concurrency, rate=self.rate, hold=gate)


@dataclass(frozen=True)
class Variant:
    """A server under test: the echo floor, or ivr on a backend, in-process child or ``ivr serve --workers N``."""

    name: str
    backend: str | None = None  # None: echo
    workers: int = 0  # 0: the bench's own child (start_service); N: `python -m ivr serve --workers N`
    cold: bool = False
    crm: bool = False  # three CRM targets (bench/crm_receivers.py), one of them down
    crm_deliver: bool = True  # False: the server only enqueues (crm.deliver = false)


def ceiling_ok(run: dict[str, Any]) -> bool:
    placed = run["orders_placed_pct"] if run["server"] != "echo" else 100 * run["done"] / max(run["calls"], 1)
    p99 = run["first_prompt_ms"]["p99"]
    return (
        placed is not None and placed >= CEILING_ORDERS_PCT and p99 is not None and p99 <= CEILING_FIRST_PROMPT_P99_MS
    )


async def run_scenario(
    args: argparse.Namespace,
    variant: Variant,
    server: ServerProcess,
    scenario: Scenario,
    callers: list[str],
    deadline: Deadline,
    url: str | None,
    tag: str,
) -> dict[str, Any]:
    budget = min(deadline.left() - 30, args.run_timeout + (scenario.calls / scenario.rate if scenario.rate else 0))
    load = scenario.load(hold_wait=HOLD_MAX_WAIT)
    log_mark = server.log_path.stat().st_size if server.log_path.exists() else 0
    loadavg_start = os.getloadavg()
    server.start_sampling()
    held: dict[str, Any] = {}

    async def measure_held(gate: HoldGate) -> None:
        """When every call sits in GET DATA (or the wait is over): the server's RSS, then open the gate."""
        arrival = scenario.calls / scenario.rate if scenario.rate else 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.all_held.wait(), arrival + args.hold_wait)
        readings = []
        for _ in range(5):  # a few readings 0.1 s apart: the last allocations of the last calls settle
            readings.append(server.rss())
            await asyncio.sleep(0.1)
        # Per connected call, held or not: a call the server already sent to an operator is gone, one
        # still before its GET DATA (a slow lookup) holds memory too.
        n = inflight.now
        growth = max(readings) - server.idle_rss
        held.update(
            held=gate.held,
            connected=n,
            target=gate.target,
            rss_growth_mb=round(growth / 2**20, 1),
            rss_per_call_kb=round(growth / 1024 / n, 1) if n else None,
        )
        await gate.release()

    inflight = InFlight()
    watcher = asyncio.create_task(measure_held(load.hold)) if load.hold else None
    records, wall, inflight = await run_load(
        server.port, callers, load, idle=args.call_timeout, budget=budget, tag=tag, inflight=inflight
    )
    if watcher is not None:
        await watcher
    cpu = server.stop_sampling()
    stats = await server.request("stats")
    extra: dict[str, Any] = {
        "server": variant.name,
        "scenario": scenario.key,
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg(),
    }
    if url is not None:
        extra["records"] = await records_check(url, records[0].linkedid.rsplit("x", 1)[0] + "x", len(records))
    counts, examples, tracebacks, _ = scan_log(server.log_path, log_mark)
    extra.update(server_log_problems=counts, server_log_examples=examples, server_log_tracebacks=tracebacks)
    run = summarize(f"{variant.name} · {scenario.key}", records, wall, server, cpu, stats, extra, inflight)
    if held:  # the held-open figure replaces the peak-based one
        run["held"] = held
        run["rss_per_call_kb"] = held["rss_per_call_kb"]
    run["ceiling_ok"] = ceiling_ok(run) if scenario.ceiling_step else None
    return run


_LIBRARY: Path | None = None


async def prompt_library(workdir: Path) -> Path:
    """`ivr prompts build` once per bench run (static, named and segment prompts), copied per server."""
    global _LIBRARY
    if _LIBRARY is None:
        library = workdir / "prompts-library"
        env = {**os.environ, "IVR_PROMPTS__DIR": str(library), "IVR_DATABASE__URL": f"sqlite+aiosqlite:///{workdir}/lib.db"}
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr", "prompts", "build", env=env, cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ivr prompts build failed: {out.decode(errors='replace')[-500:]}")
        print(f"[prompts] library built in {time.monotonic() - started:.1f} s", file=sys.stderr)
        _LIBRARY = library
    return _LIBRARY


def per_call_dir(choice: str, prompts: Path) -> str:
    """``prompts.calls_dir`` for one server: ``tmpfs`` (the README's advice for production, when
    /dev/shm exists), ``prompts`` (the default, ``<prompts.dir>/calls``) or a path."""
    if choice == "prompts":
        return ""
    if choice == "tmpfs":
        shm = Path("/dev/shm")
        return str(shm / f"ivr-bench-calls-{prompts.name}") if shm.is_dir() else ""
    return str(Path(choice) / prompts.name)


async def run_variant(
    args: argparse.Namespace, variant: Variant, scenarios: list[Scenario], workdir: Path, deadline: Deadline
) -> list[dict[str, Any]]:
    """Start one server (fresh database and prompt dir), warm it up, run every scenario against it."""
    async with contextlib.AsyncExitStack() as stack:
        url = None
        prompts = workdir / f"prompts-{uuid.uuid4().hex[:6]}"
        calls_dir = per_call_dir(args.calls_dir, prompts)
        if calls_dir:
            stack.callback(shutil.rmtree, calls_dir, ignore_errors=True)
        if variant.backend is not None and not variant.cold:
            # Steady state, as after `ivr prompts build` on the machine: the library is on disk.
            shutil.copytree(await prompt_library(workdir), prompts)
        else:
            prompts.mkdir()
        if variant.backend is None:
            (prompts / "echo.wav").write_bytes(b"RIFF" + b"\0" * 40)
            server: ServerProcess = ServerProcess("echo", workdir, prompts_dir=str(prompts))
            callers = [f"+7916{7_000_000 + i:07d}" for i in range(min(max(s.calls for s in scenarios), args.customers))]
            data: dict[str, Any] = {}
        else:
            if variant.backend == "sqlite":
                url = f"sqlite+aiosqlite:///{workdir}/bench-{uuid.uuid4().hex[:6]}.sqlite3"
            else:
                url = await stack.enter_async_context(temporary_pg_database(args.pg_url))
            customers = min(max(s.calls for s in scenarios), args.customers)
            data = await prepare_database(url, workdir, customers, args.names)
            callers = data["load"]
            if variant.workers:
                server = CliServerProcess(
                    workdir, db_url=url, prompts_dir=str(prompts), workers=variant.workers, calls_dir=calls_dir
                )
            else:
                server = ServerProcess("ivr", workdir, db_url=url, prompts_dir=str(prompts), calls_dir=calls_dir)
            if variant.crm:
                from bench.crm_receivers import Receivers

                receivers = Receivers()
                receivers.start()
                stack.callback(receivers.stop)
                stack.callback(lambda: print(f"[{variant.name}] CRM requests received: {receivers.hits}",
                                             file=sys.stderr))
                server.env["IVR_BENCH_CRM_TARGETS"] = receivers.targets_json()
                server.env["IVR_CRM__DELIVER"] = "true" if variant.crm_deliver else "false"
        try:
            await server.start()
        except RuntimeError as exc:
            print(f"[{variant.name}] skipped: {exc}", file=sys.stderr)
            return []
        runs: list[dict[str, Any]] = []
        try:
            if variant.backend is not None and not variant.cold:
                # One call per distinct greeting (customers sharing a name and an order hear the same file).
                warm, _, _ = await run_load(
                    server.port,
                    data["warm"],
                    Load(len(data["warm"])),
                    idle=args.call_timeout,
                    budget=min(deadline.left() - 30, 120),
                    tag=f"w{uuid.uuid4().hex[:4]}",
                )
                print(f"[{variant.name}] warm-up: {Counter(r.result for r in warm)}", file=sys.stderr)
            failed_step = False
            for i, scenario in enumerate(scenarios):
                if scenario.ceiling_step and failed_step:
                    continue  # the ceiling is found: higher rates only queue
                if deadline.left() < 60:
                    print(f"[{variant.name}] {scenario.key} skipped: global deadline close", file=sys.stderr)
                    continue
                run = await run_scenario(
                    args, variant, server, scenario, callers, deadline, url, f"r{i}{uuid.uuid4().hex[:4]}"
                )
                runs.append(run)
                if scenario.ceiling_step and not run["ceiling_ok"]:
                    failed_step = True
                print(
                    f"[{run['name']}] {run['completed']}/{run['calls']} completed, orders placed "
                    f"{run['orders_placed_pct']} %, {run['calls_per_s']} calls/s, 1st prompt p99 "
                    f"{run['first_prompt_ms']['p99']} ms, CPU {run['server_cpu_ms_per_call']} ms/call, "
                    f"records {(run.get('records') or {}).get('complete_pct')} %",
                    file=sys.stderr,
                )
        finally:
            stopped = await server.stop()
        if runs:
            runs[-1]["server_stop"] = stopped
            runs[-1]["server_log"] = str(server.log_path)
            if args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log_path, keep / f"{variant.name.replace(' ', '_')}-{server.log_path.name}")
        return runs


def plan(args: argparse.Namespace) -> tuple[list[Variant], list[Scenario]]:
    scenarios: list[Scenario] = []
    if args.all or not (args.rate or args.find_ceiling or args.hold):
        concurrency = 100 if args.all else args.concurrency
        scenarios.append(Scenario(f"burst {args.calls}, {concurrency} in flight", args.calls, concurrency=concurrency))
    if args.rate:
        scenarios.append(
            Scenario(f"{fmt(args.rate)}/s × {fmt(args.duration)} s", round(args.rate * args.duration), rate=args.rate)
        )
    if args.all or args.find_ceiling:
        for rate in args.steps:
            scenarios.append(
                Scenario(
                    f"ceiling step {fmt(rate)}/s × {fmt(args.duration)} s",
                    max(1, round(rate * args.duration)),
                    rate=rate,
                    ceiling_step=True,
                )
            )
    if args.all or args.hold:
        n = args.hold or 2000
        scenarios.append(Scenario(f"hold {n} in GET DATA", n, rate=args.hold_rate, hold=True))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    variants = [Variant("echo")]
    for backend in backends:
        variants.append(Variant(f"ivr {backend}", backend))
        if args.crm:
            variants.append(Variant(f"ivr {backend} + 3 CRM targets, 1 down", backend, crm=True))
            variants.append(Variant(f"ivr {backend} + 3 CRM targets, enqueue only", backend, crm=True,
                                    crm_deliver=False))
        if args.cold:
            variants.append(Variant(f"ivr {backend} cold", backend, cold=True))
    if args.workers:
        if "postgres" in backends:
            variants.append(Variant(f"ivr postgres --workers {args.workers}", "postgres", workers=args.workers))
        else:
            print("--workers needs PostgreSQL (SQLite is the single-process default): skipped", file=sys.stderr)
    return variants, scenarios


def ceilings(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per server: the highest ceiling step that met the goal, and whether a higher step was tried and failed."""
    out: dict[str, Any] = {}
    for r in runs:
        if r.get("ceiling_ok") is None:
            continue
        rate = float(r["scenario"].split()[2].removesuffix("/s"))
        entry = out.setdefault(r["server"], {"ceiling_calls_per_s": 0.0, "first_failed_step": None})
        if r["ceiling_ok"]:
            entry["ceiling_calls_per_s"] = max(entry["ceiling_calls_per_s"], rate)
        elif entry["first_failed_step"] is None:
            entry["first_failed_step"] = rate
    return out


def _git_commit() -> str | None:
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    return None


def lookup_1m(args: argparse.Namespace) -> str:
    script = Path(__file__).resolve().parent / "lookup_1m.py"
    if not script.exists():
        return "Caller lookup at 1M customers / 5M orders: bench/lookup_1m.py is not on this branch."
    if not args.lookup_1m:
        return "Caller lookup at 1M customers / 5M orders: run `bench/lookup_1m.py` (--lookup-1m runs it here)."
    done = subprocess.run(
        [sys.executable, str(script), "--pg-url", args.pg_url],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=args.lookup_timeout,
    )
    return f"bench/lookup_1m.py (exit {done.returncode}):\n{done.stdout.strip()}\n{done.stderr.strip()[-2000:]}"


async def main_async(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    deadline = Deadline(args.deadline)
    if args.backend != "sqlite" or args.workers:
        host = make_url(args.pg_url).host or "127.0.0.1"
        if host not in LOCAL_PG_HOSTS:
            print(f"refusing a non-local PostgreSQL host {host!r}: this benchmark stays on 127.0.0.1", file=sys.stderr)
            return 2
    variants, scenarios = plan(args)
    most = max(s.calls if s.rate or s.hold else (s.concurrency or s.calls) for s in scenarios)
    nofile = _raise_nofile(most * 2 + 1024)
    started = datetime.now(UTC)
    loadavg_start = os.getloadavg()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
        workdir = Path(tmp)
        try:
            async with asyncio.timeout(args.deadline):
                for variant in variants:
                    runs.extend(await run_variant(args, variant, scenarios, workdir, deadline))
        except TimeoutError:
            print(f"global deadline of {args.deadline} s reached; reporting what finished", file=sys.stderr)
    echo = {r["scenario"]: r for r in runs if r["server"] == "echo"}
    for r in runs:
        add_ratios(r, echo.get(r["scenario"]))
    lookup = lookup_1m(args)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30, 1) if psutil else '?'} GiB RAM, {platform.platform()}",
        "python": platform.python_version(),
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg(),
        "rlimit_nofile": nofile,
        "setup": "server in a child process (bench child: start_service, web disabled; or `ivr serve --workers N`); "
        "load generator in this process; media answered at once (no playback time)",
        "load_generator_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "elapsed_s": round(args.deadline - deadline.left(), 1),
        "commit": _git_commit(),
        "calls_dir": args.calls_dir,
        "event_loop": loop_choice(),
        "ceilings": ceilings(runs),
        "lookup_1m": lookup,
    }
    print(
        f"\n{meta['date']}  {meta['machine']}  python {meta['python']}  load average "
        f"{' '.join(f'{x:.2f}' for x in loadavg_start)} → {' '.join(f'{x:.2f}' for x in meta['loadavg_end'])} "
        f"(1/5/15 min), {meta['elapsed_s']} s, commit {meta['commit']}, per-call prompts on {meta['calls_dir']}, "
        f"event loop {meta['event_loop']}\n"
    )
    if runs:
        print(markdown_table(runs))
        if meta["ceilings"]:
            print(
                f"\nCeiling (orders placed >= {CEILING_ORDERS_PCT:g} % and 1st prompt p99 <= "
                f"{CEILING_FIRST_PROMPT_P99_MS:g} ms, steps of {fmt(args.duration)} s): "
                + "; ".join(
                    f"{k} {fmt(v['ceiling_calls_per_s'])} calls/s"
                    + (f" (failed at {fmt(v['first_failed_step'])})" if v["first_failed_step"] else " (no step failed)")
                    for k, v in meta["ceilings"].items()
                )
            )
        print(f"\n{lookup}")
        print_details(runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": runs}, ensure_ascii=False, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    bad = any(r["failed"] for r in runs if r.get("ceiling_ok") is None)
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
    p.add_argument("--deadline", type=float, default=None, help="global deadline in seconds (300, 2400 with --all)")
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
        default=False,
        help="also run each ivr backend with an empty prompt cache on a fresh database (default off)",
    )
    g = p.add_argument_group("issue 7 goals")
    g.add_argument(
        "--all",
        action="store_true",
        help="every goal: burst with 100 in flight, --find-ceiling, --hold 2000, --workers 2",
    )
    g.add_argument("--rate", type=float, help="open loop: a new call every 1/RATE s for --duration s")
    g.add_argument("--duration", type=float, default=10.0, help="seconds of a paced run or ceiling step (default 10)")
    g.add_argument(
        "--find-ceiling",
        action="store_true",
        help="step the rate up (--steps) until orders placed < 99 %% or 1st prompt p99 > 150 ms",
    )
    g.add_argument(
        "--steps",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[25, 50, 100, 150, 200, 250],
        help="ceiling rates, calls/s (default 25,50,100,150,200,250)",
    )
    g.add_argument("--hold", type=int, default=0, help="hold N calls open in GET DATA and measure RSS per call")
    g.add_argument(
        "--hold-rate",
        type=float,
        default=100.0,
        help="arrival rate of the held calls (default 100/s, below agi.max_call_rate=150 by default)",
    )
    g.add_argument(
        "--hold-wait",
        type=float,
        default=10.0,
        help="seconds after the last arrival to wait for every call to reach GET DATA (default 10)",
    )
    g.add_argument(
        "--workers", type=int, default=0, help="also run `python -m ivr serve --workers N` on PostgreSQL (2 with --all)"
    )
    g.add_argument(
        "--customers",
        type=int,
        default=2000,
        help="load customers per database; calls beyond it reuse them in turn (default 2000)",
    )
    g.add_argument("--lookup-1m", action="store_true", help="also run bench/lookup_1m.py and print its report")
    g.add_argument("--lookup-timeout", type=float, default=1800.0, help="cap on bench/lookup_1m.py (default 1800 s)")
    p.add_argument("--crm", action="store_true",
                   help="also run each backend with three CRM targets configured, one of them down (issue 11)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--keep-logs", help="copy the servers' logs to this directory")
    p.add_argument("--child", choices=["ivr", "echo"], help=argparse.SUPPRESS)
    p.add_argument("--db-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--prompts-dir", default="", help=argparse.SUPPRESS)
    p.add_argument(
        "--calls-dir",
        default="tmpfs",
        help="where the servers write per-call read-backs (prompts.calls_dir): tmpfs (/dev/shm, as the README "
        "advises for production), prompts (<prompts.dir>/calls, the default setting) or a directory",
    )
    args = p.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = args.calls
    if args.all and not args.workers:
        args.workers = 2
    if args.deadline is None:
        args.deadline = 2400.0 if args.all else 300.0
    if not 1 <= args.names <= len(NAMES):
        p.error(f"--names must be within 1..{len(NAMES)}")
    if args.calls < 1 or args.calls > 20000 or args.concurrency < 1:
        p.error("--calls must be within 1..20000 and --concurrency >= 1")
    if (args.rate is not None and args.rate <= 0) or args.duration <= 0 or args.hold < 0 or args.customers < 1:
        p.error("--rate and --duration must be > 0, --hold >= 0, --customers >= 1")
    if any(r <= 0 for r in args.steps):
        p.error("--steps must be positive rates")
    return args


def main(argv: list[str] | None = None) -> int:
    from ivr import event_loop

    args = parse_args(argv)
    if args.child:
        _take_stdout()
        _raise_nofile(20000)
        # The servers (echo and ivr alike) and the load generator run on the loop `ivr serve` runs
        # on (agi.event_loop; IVR_AGI__EVENT_LOOP=asyncio for the standard one).
        event_loop.run(_child_ivr(args) if args.child == "ivr" else _child_echo(args), loop_choice())
        return 0
    from ivr.logs import configure_logging

    configure_logging("WARNING")  # the importers' info lines would bury the report
    return event_loop.run(main_async(args), loop_choice())


def loop_choice() -> str:
    from ivr.settings import load_settings

    return load_settings().agi.event_loop


if __name__ == "__main__":
    sys.exit(main())
