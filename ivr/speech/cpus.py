"""Where vosk decodes the answers: ``speech.recognizer_cpus``, by default every core but one, so the
calls keep a core whose caches nobody else fills; and the nice of decoding threads.

Why, measured with ``bench/speech_load.py agi`` on this 2-core machine (a repeat-order call by keys,
its AGI turnaround while 50 callers speak against nobody speaking; the bench's own noise, quiet
against quiet, is up to ×1.09 in the mean):

* Not CPU time: two processes spinning at nice 19 on both cores left the call as it was (mean
  ×0.96); the scheduler gives a nice-0 thread the core at once.
* Caches: two memory-streaming nice-19 processes made the same call take 37 % more CPU time and its
  mean ×1.18; one of them, on one core only, nothing (+0 %, ×0.98). A thread that runs on a core
  between two steps of a call evicts the call's working set (the interpreter, the SQL layer) from
  that core's L1/L2, and nice cannot help: the call pays when it comes back. vosk decoding is
  such a thread (while 50 callers spoke a call took up to 31 % more CPU).
* Decoding on every core but the first: mean ×0.92–1.08 (4 runs), against ×1.10–1.36 (3 runs)
  with decoding on both cores; in one run alternating the two, ×1.07 against ×1.15. 50 callers'
  answers still came p95 230–250 ms after their word (225 ms on both cores): one core decodes 50
  callers with room to spare (~0.7 of it).

So ``auto`` leaves the first CPU the process may use to the event loops (the calls, the AudioSocket
frames) and confines the decoding threads to the others; with one CPU there is nothing to leave.
"all" lifts the confinement, a list ("1-3,6") names the CPUs. CPUs of the list the process may not
use are dropped; when none is left the threads are not confined, and the service says so in one
warning at start. ``speech.ready`` in the log and /healthz ``speech.decoding_cpus`` give the CPUs used.
Transcription threads are not confined (ivr/speech/transcriber.py says why).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable

AUTO = "auto"
ALL = "all"


def parse_cpu_list(spec: str) -> frozenset[int]:
    """ "1-3,6" (the kernel's cpu-list format, as ``taskset -c`` takes it) -> {1, 2, 3, 6}."""
    cpus: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ValueError(f"{spec!r} is not a CPU list: {part!r} is neither a number nor a range like 1-3") from None
        if first < 0 or last < first:
            raise ValueError(f"{spec!r} is not a CPU list: {part!r} is not a range of CPU numbers")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def check_spec(spec: str) -> None:
    """Raises ValueError when ``spec`` is neither "auto", "all" nor a CPU list (the settings' check)."""
    if is_cpu_list(spec):
        parse_cpu_list(spec)


def is_cpu_list(spec: str) -> bool:
    return spec not in (AUTO, ALL)


def decoding_cpus(spec: str, usable: Iterable[int] | None = None) -> frozenset[int] | None:
    """The CPUs the decoding threads are confined to, or None (not confined: "all", one CPU only, or
    none of a list's CPUs usable). ``usable``: the CPUs this process may run on (its affinity, from
    systemd's CPUAffinity= or taskset; by default read from the process)."""
    allowed = frozenset(os.sched_getaffinity(0) if usable is None else usable)
    if spec == ALL:
        return None
    if spec == AUTO:
        return allowed - {min(allowed)} if len(allowed) > 1 else None
    return (parse_cpu_list(spec) & allowed) or None


def format_cpus(cpus: Iterable[int] | None) -> str:
    """{1, 2, 3, 6} -> "1-3,6"; None -> "all" (for the log and /healthz)."""
    if cpus is None:
        return ALL
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def confine_this_thread(cpus: frozenset[int] | None) -> None:
    """Run the calling thread on ``cpus`` only (Linux: a thread's affinity is its own, set through its
    thread id; the event loop's thread is untouched). Elsewhere, or refused, it runs where it may."""
    if cpus is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(threading.get_native_id(), cpus)


def lower_this_thread(steps: int) -> None:
    """Run the calling thread ``steps`` nice levels below the thread that started it (Linux: a
    thread's nice value is its own and a new thread inherits its creator's; capped at 19)."""
    if steps > 0:
        with contextlib.suppress(OSError, AttributeError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
