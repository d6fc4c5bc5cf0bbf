"""`ivr serve --workers N`: one supervisor process, N worker processes each running the whole service.

Decisions:

- Workers are fresh interpreters (``python -m ivr … serve --worker-ready-fd N``), not forks: a fork would copy
  the supervisor's event loop and open descriptors, and a worker must be exactly what `ivr serve`
  is. Each listens on the same FastAGI and web ports with SO_REUSEPORT; the kernel spreads the
  connections. The supervisor migrates the database (and loads demo data) once, before the workers
  start, so N workers never race over the schema.
- SIGTERM/SIGINT are forwarded to every worker; each stops like a single `ivr serve` (stops
  accepting, lets calls finish within its grace), and the supervisor waits ``stop_timeout`` before
  it kills what is left. It exits 0 when every worker exited 0 after being asked to stop.
- A worker that dies without being asked is restarted after a backoff (1 s doubling to 30 s; back
  to 1 s once a worker has run for ``stable_after`` s), logged in one line. A worker that *exits
  with an error* at its very first start, before it reported ready (one byte on a pipe once
  `start_service` returned), means the configuration is broken (port taken, database unreachable):
  the supervisor stops everything and exits 1 instead of looping. A readiness report, not a timer:
  on this loaded 2-core box a worker's start-up took from 3 to over 10 s. A worker killed by a
  signal (OOM killer, kill -9), or failing after it once served, is always restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

log = structlog.get_logger("ivr.cluster")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    starts: int = 0
    backoff: float = BACKOFF_FIRST
    ready: bool = False  # reported ready at least once
    ready_task: asyncio.Task[None] | None = None


def worker_command(config: str | None) -> list[str]:
    """The worker's command line, without ``--worker-ready-fd N`` (added per start)."""
    command = [sys.executable, "-m", "ivr"]
    if config:
        command += ["--config", config]
    return [*command, "serve"]


def report_ready(fd: int) -> None:
    """In the worker: tell the supervisor we serve (one byte), then close the pipe."""
    with contextlib.suppress(OSError):
        os.write(fd, b"1")
        os.close(fd)


class Supervisor:
    def __init__(
        self,
        count: int,
        command: Sequence[str],
        *,
        stop_timeout: float = 30.0,
        stable_after: float = 10.0,
    ) -> None:
        self._workers = [_Worker(i) for i in range(count)]
        self._command = list(command)
        self._stop_timeout = stop_timeout
        self._stable_after = stable_after
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM
        self._failed: int | None = None

    def request_stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self._signal = sig
        self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig)
        try:
            for worker in self._workers:
                await self._spawn(worker)
            watchers = [asyncio.create_task(self._watch(w)) for w in self._workers]
            await self._stopping.wait()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            codes = await self._stop_all()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if self._failed is not None:
            return 1
        return 0 if all(code == 0 for code in codes) else 1

    async def _spawn(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._command, "--worker-ready-fd", str(write_fd), pass_fds=(write_fd,)
            )
        finally:
            os.close(write_fd)  # the worker holds the only write end: EOF when it dies
        worker.started_at = time.monotonic()
        worker.starts += 1
        worker.ready_task = asyncio.create_task(self._await_ready(worker, read_fd))
        log.info("worker.started", worker=worker.index, pid=worker.process.pid, start=worker.starts)

    async def _await_ready(self, worker: _Worker, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(read_fd, "rb")
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            if await reader.read(1) == b"1":
                worker.ready = True
                log.info("worker.ready", worker=worker.index, pid=worker.process.pid if worker.process else None,
                         seconds=round(time.monotonic() - worker.started_at, 1))
        finally:
            transport.close()

    async def _watch(self, worker: _Worker) -> None:
        while not self._stopping.is_set():
            assert worker.process is not None
            code = await worker.process.wait()
            if worker.ready_task is not None:
                await worker.ready_task  # EOF came with the exit: this only settles `ready`
            if self._stopping.is_set():
                return
            ran = time.monotonic() - worker.started_at
            if worker.starts == 1 and code > 0 and not worker.ready:  # it gave up by itself at start
                log.error("worker.failed_at_start", worker=worker.index, pid=worker.process.pid, exit_code=code,
                          ran_seconds=round(ran, 1))
                self._failed = code
                self.request_stop()
                return
            if ran >= self._stable_after:
                worker.backoff = BACKOFF_FIRST
            log.warning("worker.restarting", worker=worker.index, pid=worker.process.pid, exit_code=code,
                        ran_seconds=round(ran, 1), backoff_seconds=worker.backoff)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.backoff):
                    await self._stopping.wait()
                return  # asked to stop during the backoff
            worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
            await self._spawn(worker)

    async def _stop_all(self) -> list[int | None]:
        running = [w.process for w in self._workers if w.process is not None and w.process.returncode is None]
        log.info("workers.stopping", signal=self._signal.name, workers=len(running))
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self._signal)
        waits = [asyncio.create_task(p.wait()) for p in running]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self._stop_timeout)
            if pending:
                log.error("workers.killed", count=len(pending), after_seconds=self._stop_timeout)
                for process in running:
                    if process.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                await asyncio.wait(pending)
        for worker in self._workers:
            if worker.ready_task is not None:
                worker.ready_task.cancel()
        await asyncio.gather(*(w.ready_task for w in self._workers if w.ready_task), return_exceptions=True)
        return [w.process.returncode if w.process else None for w in self._workers]
