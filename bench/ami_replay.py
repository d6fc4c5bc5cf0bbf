"""AMI replay benchmark: 10,000 calls of real Asterisk AMI events through the call-tracking chain.

    .venv/bin/python bench/ami_replay.py --backend sqlite|postgres|both [--calls 10000] [--json out.json]

What runs where (one process, one asyncio loop, everything on 127.0.0.1)
-----------------------------------------------------------------------
* ``tests.fakeami.FakeAmi``: a fake Asterisk Manager over real TCP (banner, Login, Ping,
  CoreShowChannels/QueueStatus answers byte for byte like Asterisk 22). The calls' events are
  written to its logged-in client in exactly the bytes ``FakeAmi.push`` would write
  (``format_message``), but pre-rendered from templates so the producer costs little CPU.
* The chain under test, wired like ``ivr.app.start_service``: ``AmiClient`` (real asyncio streams,
  parser, ordered dispatcher) -> ``CallTracker.handle`` -> ``CallNotifier`` -> a real ``CrmStore``
  (SQLite file, or a throw-away PostgreSQL database; ``crm_bridge.db.upgrade``) -> ``OperatorBoard``
  with one subscribed feed queue per operator (what the WebSocket feed reads), each drained by a
  task like the WebSocket handler.
* Baseline, same run, same bytes: an ``AmiClient`` whose ``on_event`` only counts (protocol and
  parsing cost only, plus the producer's own cost, which both runs pay).

The 10,000 calls are clones of three captured calls (``shared/asterisk-traces/ami``):
``menu_operator_senddtmf`` (escalated, answered by an operator; 60 %), ``queue_abandon`` (the caller
hangs up in the queue; 30 %) and ``sipp_menu_operator`` (a SIP trunk call answered by a PJSIP
operator; 10 %). Every clone gets its own Linkedid/Uniqueid/DestUniqueid/DestLinkedid/Local*Uniqueid
and Cdr UniqueID (``<1900000000+n>.<k>``), its own channel names (the ``-0000000f`` suffix), a caller
number from a pool (``--numbers``, all imported as customers with one order, so callback tasks
dedupe per customer/number and cards show a customer), and an operator out of ``--operators``
(Interface, StateInterface, MemberName, channel and Exten). By default only what the production
AMI account receives is replayed: ``config/asterisk/manager_ivr.conf`` grants the read classes
call,agent,cdr,dialplan,user,dtmf and excludes CEL, Newexten and every VarSet but ``[_[_]]IVR_*``
(``--all-events`` replays the whole capture: CEL, Newexten, AGI, every VarSet).

Calls are interleaved: a sliding window of ``--window`` calls is in flight; each step writes the
next event of a call picked at random from the window (seeded), so each call keeps its own order
and a new call enters when one ends. The producer writes chunks of ``--chunk`` events and keeps at
most ``--max-lag`` events written but not yet handled by the tracker (so the chain runs at full
speed without an unbounded backlog), or paces at ``--rate`` events/s.

Measured: events/s end to end (first write -> tracker.handle returned for the last event), each
event's write time (perf_counter, when its bytes were handed to the transport) vs

* handled: ``tracker.handle`` returned (wrapped);
* timeline row committed: a notifier listener ties each timeline event to the AMI event being
  handled when it was emitted; ``store.add_timeline_events`` is wrapped, and the commit time of a
  batch (the await returned = COMMIT done) is the commit time of every event in it;
* call row with its outcome committed: ``store.update_call`` wrapped, the call whose ``outcome`` was
  written, vs the write of the Hangup that ended it;
* card on the feed: each feed queue's ``put_nowait`` is wrapped (the instant the board publishes);
  the n-th ``ringing``/``talking`` card of a call is tied to its n-th ``operator.ringing``/
  ``operator.answered`` timeline event, hence to the AgentCalled/AgentConnect that caused it;

peak RSS of this process (psutil every 50 ms + ru_maxrss), CPU seconds, and after the run: call
rows per outcome (per template), open callback tasks vs distinct abandoning customers, timeline
rows, error/exception lines in the structlog output (INFO, console renderer, like ``ivr serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

try:
    import psutil
except ImportError:
    psutil = None

from agi_load import LOCAL_PG_HOSTS, PG_DEFAULT, PG_ENV, pct, temporary_pg_database, write_load_csv  # noqa: E402

HOST = "127.0.0.1"
MIX = [("menu_operator_senddtmf", 0.6), ("queue_abandon", 0.3), ("sipp_menu_operator", 0.1)]
TRACE_NUMBER = "+79161234567"
READ_CLASSES = {"call", "agent", "cdr", "dialplan", "user", "dtmf"}  # manager_ivr.conf read=
_IVR_VAR = re.compile(r"^_{0,2}IVR_")
_UID = re.compile(r"\b\d{10}\.\d+\b")
_CHAN = re.compile(r"(?<=[A-Za-z0-9])-([0-9a-f]{8})(?=;|\r|\n|$)")
PHONE_BASE = 8_000_000  # pool numbers +79168000000 ...


# ---------------------------------------------------------------------------------------- templates


def production_filter(event: dict[str, str]) -> bool:
    """What manager_ivr.conf lets through: read classes, then the exclude filters."""
    classes = {c.strip() for c in event.get("Privilege", "").split(",")} - {"all", ""}
    if not classes & READ_CLASSES:
        return False
    name = event.get("Event")
    if name in ("CEL", "Newexten"):
        return False
    if name == "VarSet":
        var = event.get("Variable", "")
        return bool(_IVR_VAR.match(var)) and not var.startswith("___")
    return True


class Template:
    """One captured call as format strings: {u0..} uniqueids, {c0..} channel suffixes, {num}, {op}."""

    def __init__(self, name: str, all_events: bool) -> None:
        from tests.fakeami import TRACES, format_message, load_trace_events

        self.name = name
        events = [dict(e) for e in load_trace_events(TRACES / f"{name}.txt")]
        events = [e for e in events if e.get("Event") not in ("FullyBooted", "SuccessfulAuth")]
        if not all_events:
            events = [e for e in events if production_filter(e)]
        wires = [format_message(e).decode() for e in events]
        uids = sorted({u for w in wires for u in _UID.findall(w)}, key=lambda u: tuple(map(int, u.split("."))))
        chans = sorted({c for w in wires for c in _CHAN.findall(w)})
        self.linkedid_slot = None
        linked = {e.get("Linkedid") for e in events if e.get("Linkedid")}
        (self.trace_linkedid,) = linked
        self.n_uids, self.n_chans = len(uids), len(chans)
        uid_slot = {u: f"{{u{i}}}" for i, u in enumerate(uids)}
        chan_slot = {c: f"{{c{i}}}" for i, c in enumerate(chans)}
        self.formats: list[str] = []
        self.kinds: list[str] = []
        for e, w in zip(events, wires, strict=True):
            w = w.replace("{", "{{").replace("}", "}}")
            w = _UID.sub(lambda m: uid_slot[m.group(0)], w)
            w = _CHAN.sub(lambda m: "-" + chan_slot[m.group(1)], w)
            w = w.replace(TRACE_NUMBER, "{num}")
            # the operator: Local/101@operator-agent, Local/102@operator-noanswer, PJSIP/operator1
            w = re.sub(r"Local/10[12]@", "Local/{op}@", w)
            w = w.replace("PJSIP/operator1", "PJSIP/{op}")
            w = re.sub(r"Operator 10[12]", "Operator {op}", w)
            w = re.sub(r"(?m)^((?:\w*Exten)|Destination): 10[12]\r$", r"\1: {op}\r", w)
            self.formats.append(w)
            self.kinds.append(e["Event"])
        # the slot of the Linkedid
        self.linked_slot = uids.index(self.trace_linkedid)
        # Which event ends the call for the tracker: the last Hangup.
        self.last_hangup = max(i for i, k in enumerate(self.kinds) if k == "Hangup")
        # sanity: the rendered trace with its own values is byte-identical to FakeAmi.push's bytes
        own = {f"u{i}": u for i, u in enumerate(uids)} | {f"c{i}": c for i, c in enumerate(chans)}
        op_own = {"menu_operator_senddtmf": "101", "queue_abandon": "102", "sipp_menu_operator": "operator1"}[name]
        for f, w in zip(self.formats, wires, strict=True):
            r = f.format(num=TRACE_NUMBER, op=op_own, **own)
            assert r == w, (name, r, w)

    def render(self, clone: int, number: str, op: str) -> list[bytes]:
        ids = {f"u{i}": f"{1900000000 + clone}.{i}" for i in range(self.n_uids)}
        ids |= {f"c{i}": f"{(clone * 8 + i) & 0xFFFFFFFF:08x}" for i in range(self.n_chans)}
        return [f.format(num=number, op=op, **ids).encode() for f in self.formats]

    def linkedid(self, clone: int) -> str:
        return f"{1900000000 + clone}.{self.linked_slot}"


class Plan:
    """Which template, number and operator each call gets, and the interleaved order of events."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = random.Random(args.seed)
        self.templates = {name: Template(name, args.all_events) for name, _ in MIX}
        names = [n for n, _ in MIX]
        weights = [w for _, w in MIX]
        self.calls: list[tuple[str, str, str]] = []  # (template, number, operator)
        counts = {n: round(args.calls * w) for n, w in MIX}
        counts[names[0]] += args.calls - sum(counts.values())
        kinds = [n for n in names for _ in range(counts[n])]
        rng.shuffle(kinds)
        self.numbers = [f"+7916{PHONE_BASE + i:07d}" for i in range(args.numbers)]
        self.operators = [str(201 + i) for i in range(args.operators)]
        for kind in kinds:
            self.calls.append((kind, rng.choice(self.numbers), rng.choice(self.operators)))
        del weights
        self.window = args.window
        self.seed = args.seed
        self.total_events = sum(len(self.templates[k].formats) for k, _, _ in self.calls)

    def stream(self):
        """Yields (call index, event index within the call, bytes) in the interleaved order."""
        rng = random.Random(self.seed + 1)
        active: list[list[Any]] = []  # [call index, next event, rendered]
        nxt = 0
        while active or nxt < len(self.calls):
            while len(active) < self.window and nxt < len(self.calls):
                kind, number, op = self.calls[nxt]
                active.append([nxt, 0, self.templates[kind].render(nxt, number, op)])
                nxt += 1
            slot = rng.randrange(len(active))
            item = active[slot]
            yield item[0], item[1], item[2][item[1]]
            item[1] += 1
            if item[1] == len(item[2]):
                active[slot] = active[-1]
                active.pop()

    def linkedid(self, call: int) -> str:
        return self.templates[self.calls[call][0]].linkedid(call)


# ------------------------------------------------------------------------------------------- runner


class Sampler:
    def __init__(self) -> None:
        self.peak = 0
        self._task: asyncio.Task | None = None
        self._ps = psutil.Process() if psutil else None

    def rss(self) -> int:
        return self._ps.memory_info().rss if self._ps else 0

    def start(self) -> None:
        self.peak = self.rss()
        if self._ps:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            await asyncio.sleep(0.05)

    def stop(self) -> float:
        if self._task:
            self._task.cancel()
        self.peak = max(self.peak, self.rss())
        return self.peak / 2**20


class Replay:
    """Writes the plan's stream to the FakeAmi's client; records each event's write time."""

    def __init__(self, plan: Plan, server, args: argparse.Namespace) -> None:
        self.plan = plan
        self.server = server
        self.args = args
        self.pushed_at = array("d")
        self.event_call = array("i")  # global seq -> call index
        self.event_idx = array("h")  # global seq -> event index in its call
        self.handled = 0
        self.handled_at = array("d")
        self.progress = asyncio.Event()
        self.first_push = 0.0

    def note_handled(self) -> None:
        self.handled += 1
        self.handled_at.append(time.perf_counter())
        if self.handled >= self._wake_at:
            self.progress.set()

    async def run(self, budget: float) -> bool:
        """Push everything; True when the last event was handled within the budget."""
        (conn,) = self.server.clients
        writer = conn.writer
        chunk, lag, rate = self.args.chunk, self.args.max_lag, self.args.rate
        end = time.monotonic() + budget
        self._wake_at = 0
        buf: list[bytes] = []
        pushed = 0
        self.first_push = t0 = time.perf_counter()
        stream = self.plan.stream()
        done = False
        while not done:
            buf.clear()
            for call, idx, data in stream:
                buf.append(data)
                self.event_call.append(call)
                self.event_idx.append(idx)
                if len(buf) >= chunk:
                    break
            else:
                done = True
            if not buf:
                break
            if rate:
                due = t0 + (pushed + len(buf)) / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            while pushed - self.handled > lag:
                self.progress.clear()
                self._wake_at = pushed - lag
                try:
                    await asyncio.wait_for(self.progress.wait(), max(end - time.monotonic(), 0.01))
                except TimeoutError:
                    return False
            now = time.perf_counter()
            writer.write(b"".join(buf))
            for _ in buf:
                self.pushed_at.append(now)
            pushed += len(buf)
            await writer.drain()
            if time.monotonic() > end:
                return False
        while self.handled < pushed:
            self.progress.clear()
            self._wake_at = pushed
            try:
                await asyncio.wait_for(self.progress.wait(), max(end - time.monotonic(), 0.01))
            except TimeoutError:
                return False
        return True


async def ami_client(port: int, on_event, on_resync=None):
    from ivr.ami.client import AmiClient
    from ivr.settings import AmiSettings

    settings = AmiSettings(
        host=HOST,
        port=port,
        username="ivr",
        secret="ivrsecret",
        ping_interval=5.0,
        action_timeout=5.0,
        reconnect_min=0.05,
        reconnect_max=1.0,
        max_queued_events=10000,
    )
    return AmiClient(settings, on_event, on_resync=on_resync)


async def run_baseline(plan: Plan, args: argparse.Namespace, budget: float) -> dict[str, Any]:
    from tests.fakeami import FakeAmi

    replay_box: list[Replay] = []

    def on_event(message: dict[str, str]) -> None:
        if replay_box and message.get("Event") not in ("FullyBooted", "SuccessfulAuth"):
            replay_box[0].note_handled()

    server = await FakeAmi().start()
    client = await ami_client(server.port, on_event)
    sampler = Sampler()
    try:
        await client.start()
        await server.wait_for_logins(1, timeout=10)
        await asyncio.sleep(0.2)
        # never paced: the baseline measures how fast the protocol side alone can go
        replay = Replay(plan, server, argparse.Namespace(**{**vars(args), "rate": 0.0}))
        replay_box.append(replay)
        cpu0 = time.process_time()
        sampler.start()
        ok = await replay.run(budget)
        wall = (replay.handled_at[-1] if replay.handled_at else time.perf_counter()) - replay.first_push
        cpu = time.process_time() - cpu0
    finally:
        peak = sampler.stop()
        await client.stop()
        await server.stop()
    n = min(len(replay.handled_at), len(replay.pushed_at))
    lat = [replay.handled_at[i] - replay.pushed_at[i] for i in range(n)]
    return {
        "name": "baseline (AmiClient, on_event no-op)",
        "complete": ok,
        "events": replay.handled,
        "pushed": len(replay.pushed_at),
        "wall_s": round(wall, 2),
        "events_per_s": round(replay.handled / wall, 1) if wall > 0 else None,
        "calls_per_s": round(len(plan.calls) * replay.handled / max(len(replay.pushed_at), 1) / wall, 1),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu * 1e6 / max(replay.handled, 1), 1),
        "handled_ms": dist(lat),
        "peak_rss_mb": round(peak, 1),
    }


def dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(pct(values, 50) * 1000, 2),
        "p90": round(pct(values, 90) * 1000, 2),
        "p99": round(pct(values, 99) * 1000, 2),
        "max": round(max(values) * 1000, 2),
    }


async def prepare_database(url: str, workdir: Path, numbers: int) -> float:
    from crm_bridge.db import create_engine, session_factory, upgrade
    from crm_bridge.demo import load_demo_data
    from crm_bridge.importers import import_file

    t0 = time.perf_counter()
    await upgrade(url)
    engine = create_engine(url, pool_size=2)
    try:
        sessions = session_factory(engine)
        await load_demo_data(sessions)
        cust, orders, _ = write_load_csv(workdir, numbers, 10, f"a{os.getpid()}", PHONE_BASE)
        for kind, path in (("customers", cust), ("orders", orders)):
            report = await import_file(sessions, kind, path)
            if report.errors:
                raise RuntimeError(f"import {kind}: {report.errors[:3]}")
    finally:
        await engine.dispose()
    return time.perf_counter() - t0


async def run_chain(
    plan: Plan, args: argparse.Namespace, backend: str, url: str, workdir: Path, budget: float, log_path: Path
) -> dict[str, Any]:
    from ivr.app import build_store, business_hours
    from ivr.calls.notifier import CallNotifier
    from ivr.calls.recordings import RecordingLocator
    from ivr.calls.screen_pop import OperatorBoard, operator_key
    from ivr.calls.tracker import CallTracker
    from ivr.logs import configure_logging
    from ivr.settings import default_settings
    from tests.fakeami import FakeAmi

    setup_s = await prepare_database(url, workdir, args.numbers)
    settings = default_settings().replace(database={"url": url}, recordings={"dir": str(workdir / "monitor")})
    (workdir / "monitor").mkdir(exist_ok=True)
    engine, store = build_store(settings)
    notifier = CallNotifier(store)
    board = OperatorBoard(store, settings.operators.names)

    replay_box: list[Replay] = []
    current = {"seq": -1}
    # timeline events: id(event) -> (seq, kind, call_id); commit times per id
    emitted: dict[int, tuple[int, str, str]] = {}
    keep_alive: list[Any] = []
    emit_at: dict[int, float] = {}
    committed: dict[int, float] = {}
    per_call_kind: dict[tuple[str, str], list[int]] = defaultdict(list)  # (call_id, kind) -> [seq...]
    outcome_commit: dict[str, float] = {}
    store_errors = Counter()
    misaligned = [0]

    def listener(event) -> None:
        seq = current["seq"]
        emitted[id(event)] = (seq, event.kind, event.call_id)
        emit_at[id(event)] = time.perf_counter()
        keep_alive.append(event)
        if event.kind in ("operator.ringing", "operator.answered"):
            per_call_kind[(event.call_id, event.kind)].append(seq)

    notifier.subscribe(listener)  # before the board: sees each event first
    notifier.subscribe(board.on_event)

    real_add = store.add_timeline_events

    async def add_timeline_events(events):
        try:
            await real_add(events)
        except Exception:
            store_errors["add_timeline_events"] += 1
            raise
        now = time.perf_counter()
        for e in events:
            committed[id(e)] = now

    store.add_timeline_events = add_timeline_events
    real_update = store.update_call

    async def update_call(call_id, **fields):
        try:
            await real_update(call_id, **fields)
        except Exception:
            store_errors["update_call"] += 1
            raise
        if "outcome" in fields:
            outcome_commit.setdefault(call_id, time.perf_counter())

    store.update_call = update_call

    class DirectRecords:
        """Writes at once through the store (this bench times each commit; no record writer)."""

        async def update_call(self, call_id, **fields):
            await store.update_call(call_id, **fields)

        async def sync(self):
            return None

    tracker = CallTracker(
        store,
        notifier,
        records=DirectRecords(),
        recordings=RecordingLocator(workdir / "monitor", "/var/spool/asterisk/monitor"),
        operator_names=settings.operators.names,
        hours=business_hours(settings),
    )

    async def on_event(message: dict[str, str]) -> None:
        replay = replay_box[0] if replay_box else None
        if replay is None or message.get("Event") in ("FullyBooted", "SuccessfulAuth"):
            await tracker.handle(message)
            return
        seq = current["seq"] = replay.handled
        if seq < len(replay.event_call):
            call = replay.event_call[seq]
            if plan.templates[plan.calls[call][0]].kinds[replay.event_idx[seq]] != message.get("Event"):
                misaligned[0] += 1
        await tracker.handle(message)
        replay.note_handled()

    # feeds: one queue per operator, publish time recorded, drained like the WebSocket handler
    cards: list[tuple[float, str, str, str]] = []  # (put time, operator, state, call_id)
    feeds = []
    drains = []
    for op in plan.operators:
        queue = board.subscribe(operator_key(f"Local/{op}@operator-agent/n"))
        real_put = queue.put_nowait

        def put_nowait(card, _real=real_put, _op=op):
            cards.append((time.perf_counter(), _op, card.get("state"), (card.get("call") or {}).get("call_id")))
            _real(card)

        queue.put_nowait = put_nowait
        feeds.append(queue)

        async def drain(q=queue):
            while True:
                await q.get()

        drains.append(asyncio.create_task(drain()))

    # the service's logging (INFO, console renderer) into a file
    log_file = log_path.open("w", encoding="utf-8")
    saved_stderr = sys.stderr
    sys.stderr = log_file
    configure_logging(settings.log.level, settings.log.json)

    server = await FakeAmi().start()
    client = await ami_client(server.port, on_event, tracker.resync)
    sampler = Sampler()
    ok = False
    try:
        await client.start()
        await server.wait_for_logins(1, timeout=10)
        await asyncio.sleep(0.5)  # the login resync has gone through the dispatcher
        replay = Replay(plan, server, args)
        replay_box.append(replay)
        cpu0 = time.process_time()
        sampler.start()
        ok = await replay.run(budget)
        wall = (replay.handled_at[-1] if replay.handled_at else time.perf_counter()) - replay.first_push
        cpu = time.process_time() - cpu0
        # cards still being built, recordings: let them finish (bounded)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while board._tasks:  # noqa: ASYNC110  (the board has no "idle" event)
                    await asyncio.sleep(0.05)
                await tracker.drain()
        peak = sampler.stop()
    finally:
        sampler.stop()
        await client.stop()
        await server.stop()
        for t in drains:
            t.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        await board.close()
        await tracker.aclose()
        await engine.dispose()
        log_file.flush()
        sys.stderr = saved_stderr
        log_file.close()
        configure_logging("WARNING")

    # ---- latencies
    pushed_at = replay.pushed_at
    n = min(len(replay.handled_at), len(pushed_at))
    handled = [replay.handled_at[i] - pushed_at[i] for i in range(n)]
    by_kind_commit: dict[str, list[float]] = defaultdict(list)
    by_kind_defer: dict[str, list[float]] = defaultdict(list)
    uncommitted = Counter()
    for key, (seq, kind, _call) in emitted.items():
        if seq < 0:
            continue
        if key in committed:
            by_kind_commit[kind].append(committed[key] - pushed_at[seq])
            by_kind_defer[kind].append(committed[key] - emit_at[key])
        else:
            uncommitted[kind] += 1
    all_commit = [v for vs in by_kind_commit.values() for v in vs]
    # outcome committed vs the last Hangup of the call
    seq_of_last_hangup: dict[str, int] = {}
    for seq in range(len(pushed_at)):
        call = replay.event_call[seq]
        t = plan.templates[plan.calls[call][0]]
        if replay.event_idx[seq] == t.last_hangup:
            seq_of_last_hangup[plan.linkedid(call)] = seq
    outcome_lat = [outcome_commit[c] - pushed_at[s] for c, s in seq_of_last_hangup.items() if c in outcome_commit]
    # cards
    card_lat: dict[str, list[float]] = defaultdict(list)
    seen: Counter = Counter()
    unmatched = 0
    for at, _op, state, call_id in cards:
        kind = {"ringing": "operator.ringing", "talking": "operator.answered"}.get(state)
        if kind is None:
            continue
        n_th = seen[(call_id, state)]
        seen[(call_id, state)] += 1
        seqs = per_call_kind.get((call_id, kind), [])
        if n_th < len(seqs) and seqs[n_th] >= 0:
            card_lat[state].append(at - pushed_at[seqs[n_th]])
        else:
            unmatched += 1
    all_cards = card_lat["ringing"] + card_lat["talking"]

    db = await database_check(url, plan)
    logs = scan_structlog(log_path)
    return {
        "name": f"chain {backend}",
        "backend": backend,
        "complete": ok,
        "setup_s": round(setup_s, 1),
        "events": replay.handled,
        "pushed": len(pushed_at),
        "wall_s": round(wall, 2),
        "events_per_s": round(replay.handled / wall, 1) if wall > 0 else None,
        "calls_per_s": round(len(seq_of_last_hangup) / wall, 1) if wall > 0 else None,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu * 1e6 / max(replay.handled, 1), 1),
        "peak_rss_mb": round(peak, 1) if "peak" in locals() else None,
        "handled_ms": dist(handled),
        "timeline_commit_ms": dist(all_commit),
        "timeline_commit_ms_by_kind": {k: dist(v) for k, v in sorted(by_kind_commit.items())},
        "timeline_emit_to_commit_ms_by_kind": {k: dist(v) for k, v in sorted(by_kind_defer.items())},
        "timeline_events_never_committed": dict(uncommitted),
        "outcome_commit_ms": dist(outcome_lat),
        "card_ms": dist(all_cards),
        "card_ms_ringing": dist(card_lat["ringing"]),
        "card_ms_talking": dist(card_lat["talking"]),
        "cards": dict(Counter(s for _, _, s, _ in cards)),
        "cards_unmatched": unmatched,
        "cards_over_300ms": sum(1 for v in all_cards if v > 0.3),
        "store_errors": dict(store_errors),
        "events_misaligned": misaligned[0],
        "db": db,
        "log": logs,
        "log_path": str(log_path),
    }


async def database_check(url: str, plan: Plan) -> dict[str, Any]:
    from sqlalchemy import text

    from crm_bridge.db import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT call_id, outcome, caller_number FROM calls"))).all()
            tasks = (
                await conn.execute(
                    text(
                        "SELECT status, reason, count(*), count(DISTINCT coalesce(customer_id, number)) "
                        "FROM callback_tasks GROUP BY 1, 2"
                    )
                )
            ).all()
            open_tasks = (
                await conn.execute(text("SELECT customer_id, number FROM callback_tasks WHERE status = 'open'"))
            ).all()
            timeline = (await conn.execute(text("SELECT count(*) FROM timeline_events"))).scalar_one()
            kinds = (await conn.execute(text("SELECT kind, count(*) FROM timeline_events GROUP BY 1"))).all()
    finally:
        await engine.dispose()
    by_call = {r[0]: r[1] for r in rows}
    per_template: dict[str, Counter] = defaultdict(Counter)
    abandon_numbers = set()
    for i, (kind, number, _op) in enumerate(plan.calls):
        outcome = by_call.get(plan.linkedid(i), "<no row>")
        per_template[kind][outcome or "<null>"] += 1
        if outcome in ("abandoned_in_queue", "queue_timeout", "callback_requested"):
            abandon_numbers.add(number)
    return {
        "call_rows": len(rows),
        "outcomes": dict(Counter(r[1] or "<null>" for r in rows)),
        "outcomes_by_template": {k: dict(v) for k, v in per_template.items()},
        "callback_tasks": [list(t) for t in tasks],
        "open_callback_tasks": len(open_tasks),
        "distinct_abandoning_numbers": len(abandon_numbers),
        "timeline_rows": timeline,
        "timeline_by_kind": dict(sorted(kinds)),
    }


_LEVEL = re.compile(r"\[(warning|error|critical)\s*\]\s+(\S+)")


def scan_structlog(path: Path) -> dict[str, Any]:
    counts: Counter = Counter()
    tracebacks = 0
    examples: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("Traceback"):
                tracebacks += 1
            m = _LEVEL.search(line)
            if m:
                key = f"{m.group(1)} {m.group(2)}"
                counts[key] += 1
                examples.setdefault(key, line[:300].rstrip())
    errors = sum(v for k, v in counts.items() if not k.startswith("warning"))
    return {"errors": errors, "tracebacks": tracebacks, "by_event": dict(counts.most_common()), "examples": examples}


# ------------------------------------------------------------------------------------------- report


def fmt_d(d: dict[str, Any]) -> str:
    if not d or not d.get("n"):
        return "-"
    return f"{d['p50']:.0f} / {d['p99']:.0f}" if d["p50"] >= 10 else f"{d['p50']:.1f} / {d['p99']:.1f}"


def print_report(meta: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    out = sys.__stdout__
    print(f"\n{meta['date']}  {meta['machine']}  python {meta['python']}  commit {meta['commit']}", file=out)
    print(
        f"{meta['calls']} calls, {meta['events_per_call']:.1f} events/call ({meta['events']} events, "
        f"{meta['event_set']}), window {meta['window']}, max lag {meta['max_lag']}, rate {meta['rate'] or 'max'}\n",
        file=out,
    )
    head = [
        "run",
        "events",
        "wall s",
        "events/s",
        "calls/s",
        "CPU us/ev",
        "handled p50/p99 ms",
        "timeline commit p50/p99",
        "outcome commit p50/p99",
        "card p50/p99 ms",
        "peak RSS MB",
    ]
    rows = []
    base = runs[0] if runs and runs[0]["name"].startswith("baseline") else None
    for r in runs:
        rows.append(
            [
                r["name"] + ("" if r["complete"] else " (INCOMPLETE)"),
                f"{r['events']}/{r['pushed']}",
                f"{r['wall_s']}",
                f"{r['events_per_s']}",
                f"{r['calls_per_s']}",
                f"{r['cpu_us_per_event']}",
                fmt_d(r["handled_ms"]),
                fmt_d(r.get("timeline_commit_ms", {})),
                fmt_d(r.get("outcome_commit_ms", {})),
                fmt_d(r.get("card_ms", {})),
                f"{r['peak_rss_mb']}",
            ]
        )
        if base is not None and r is not base and base["events_per_s"]:
            rows.append(
                [
                    "  x baseline",
                    "",
                    f"{r['wall_s'] / base['wall_s']:.1f}",
                    f"{r['events_per_s'] / base['events_per_s']:.3f}",
                    "",
                    f"{r['cpu_us_per_event'] / base['cpu_us_per_event']:.1f}",
                    "",
                    "",
                    "",
                    "",
                    f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}",
                ]
            )
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)), file=out)
    for r in runs:
        if r is base:
            continue
        print(f"\n{r['name']}:", file=out)
        for key in (
            "card_ms_ringing",
            "card_ms_talking",
            "cards",
            "cards_unmatched",
            "cards_over_300ms",
            "timeline_commit_ms_by_kind",
            "timeline_emit_to_commit_ms_by_kind",
            "timeline_events_never_committed",
            "store_errors",
            "events_misaligned",
            "db",
            "log",
        ):
            val = r.get(key)
            if key == "log":
                val = {k: v for k, v in val.items() if k != "examples"}
            print(f"  {key}: {json.dumps(val, ensure_ascii=False)}", file=out)
        for ex in r["log"].get("examples", {}).values():
            print(f"    e.g. {ex}", file=out)


# --------------------------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    start = time.monotonic()
    left = lambda: args.deadline - (time.monotonic() - start)  # noqa: E731
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends:
        host = make_url(args.pg_url).host or "127.0.0.1"
        if host not in LOCAL_PG_HOSTS:
            print(f"refusing non-local PostgreSQL host {host!r}", file=sys.stderr)
            return 2
    started = datetime.now(UTC)
    plan = Plan(args)
    print(f"plan: {len(plan.calls)} calls, {plan.total_events} events", file=sys.stderr)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ivr-ami-bench-") as tmp:
        workdir = Path(tmp)
        try:
            async with asyncio.timeout(args.deadline):
                runs.append(await run_baseline(plan, args, min(left() - 10, args.run_timeout)))
                print(f"[baseline] {runs[-1]['events_per_s']} events/s, {runs[-1]['wall_s']} s", file=sys.stderr)
                for backend in backends:
                    if left() < 30:
                        print(f"skipping {backend}: global deadline close", file=sys.stderr)
                        continue
                    log_path = workdir / f"chain-{backend}.log"
                    if backend == "sqlite":
                        url = f"sqlite+aiosqlite:///{workdir}/ami-bench.sqlite3"
                        budget = min(left() - 20, args.run_timeout)
                        runs.append(await run_chain(plan, args, backend, url, workdir, budget, log_path))
                    else:
                        async with temporary_pg_database(args.pg_url) as url:
                            runs.append(
                                await run_chain(
                                    plan, args, backend, url, workdir, min(left() - 20, args.run_timeout), log_path
                                )
                            )
                    r = runs[-1]
                    print(
                        f"[{r['name']}] {r['events']}/{r['pushed']} events, {r['events_per_s']} events/s, "
                        f"{r['wall_s']} s, complete={r['complete']}",
                        file=sys.stderr,
                    )
                    if args.keep_logs:
                        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                        (Path(args.keep_logs) / log_path.name).write_bytes(log_path.read_bytes())
        except TimeoutError:
            print(f"global deadline of {args.deadline} s reached; reporting what finished", file=sys.stderr)
    commit = subprocess.run(  # noqa: ASYNC221  (once, after the runs)
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30, 1) if psutil else '?'} GiB RAM, {platform.platform()}",
        "python": platform.python_version(),
        "commit": commit,
        "calls": len(plan.calls),
        "events": plan.total_events,
        "events_per_call": plan.total_events / len(plan.calls),
        "event_set": "whole capture" if args.all_events else "manager_ivr.conf filters",
        "window": args.window,
        "max_lag": args.max_lag,
        "rate": args.rate,
        "operators": args.operators,
        "numbers": args.numbers,
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "elapsed_s": round(time.monotonic() - start, 1),
    }
    if runs:
        print_report(meta, runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": runs}, ensure_ascii=False, indent=2, default=str))
    bad = not runs or any(not r["complete"] for r in runs) or any(r.get("log", {}).get("errors") for r in runs)
    return 1 if bad else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--calls", type=int, default=10_000)
    p.add_argument("--window", type=int, default=200, help="calls in flight (interleaved) at once")
    p.add_argument("--operators", type=int, default=20)
    p.add_argument("--numbers", type=int, default=2000, help="caller number pool (all imported as customers)")
    p.add_argument("--max-lag", type=int, default=500, help="events written but not yet handled, at most")
    p.add_argument("--rate", type=float, default=0.0, help="pace the writes at this many events/s (0: max)")
    p.add_argument("--chunk", type=int, default=50, help="events per write")
    p.add_argument(
        "--all-events", action="store_true", help="replay the whole capture, not what manager_ivr.conf lets through"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pg-url", default=os.environ.get(PG_ENV) or PG_DEFAULT)
    p.add_argument("--deadline", type=float, default=300.0, help="global deadline, seconds (default 300)")
    p.add_argument("--run-timeout", type=float, default=600.0, help="cap on one replay (default 600 s)")
    p.add_argument("--json")
    p.add_argument("--keep-logs")
    args = p.parse_args(argv)
    if args.calls < 1 or args.window < 1 or args.max_lag < args.chunk:
        p.error("--calls, --window >= 1 and --max-lag >= --chunk")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ivr.logs import configure_logging

    configure_logging("WARNING")  # until the chain runs: then INFO into its own log file, like `ivr serve`
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
