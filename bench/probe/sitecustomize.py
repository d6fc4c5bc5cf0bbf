"""Counts the processes a server under test starts (TTS engines, sox, ...), for bench/agi_load.py.

The bench puts this directory first on ``PYTHONPATH`` of every server process it starts, so Python
imports it at start-up in the server and in every worker it spawns (``ivr serve --workers N``), and
a forked worker inherits the hook. With ``IVR_BENCH_SPAWN_LOG`` set, it appends one line
``<pid> <program>`` per ``subprocess.Popen`` audit event (asyncio's subprocesses go through Popen) to
that file. Why an audit hook: it is exact (sampling ``psutil`` children misses an espeak-ng that lives
4 ms) and it wraps nothing of ours, so the service runs unmodified. Without the variable it does nothing.
"""

import os
import sys

_PATH = os.environ.get("IVR_BENCH_SPAWN_LOG")

if _PATH:

    def _on_audit(event: str, args: tuple) -> None:
        if event != "subprocess.Popen":
            return
        executable, argv = args[0], args[1]
        if not executable:
            argv = [argv] if isinstance(argv, (str, bytes)) else list(argv or ["?"])
            executable = argv[0] if argv else "?"
        name = os.path.basename(os.fsdecode(executable)).replace(" ", "_")
        fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {name}\n".encode())  # one write(2) per line: atomic with O_APPEND
        finally:
            os.close(fd)

    sys.addaudithook(_on_audit)
