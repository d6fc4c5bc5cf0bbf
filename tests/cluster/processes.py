"""Real `ivr serve` processes for the cluster tests: environment, start, wait, health, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cli.conftest import clean_environ

# `python -m ivr` with this checkout first on the path: the installed `ivr` script may be another checkout's.
ROOT = Path(__file__).resolve().parents[2]
IVR = [sys.executable, "-m", "ivr"]
TOKEN = "cluster-t0ken"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_env(tmp_path: Path, database_url: str, *, agi_port: int, web_port: int, **extra: str) -> dict[str, str]:
    return clean_environ(
        {
            "IVR_AGI__PORT": str(agi_port),
            "IVR_WEB__PORT": str(web_port),
            "IVR_WEB__API_TOKEN": TOKEN,
            "IVR_HOURS__OPEN": "00:00",  # operators always on duty: independent of the hour of the run
            "IVR_HOURS__CLOSE": "23:59:59.999999",
            "IVR_HOURS__DAYS": "1,2,3,4,5,6,7",
            "IVR_HOURS__HOLIDAYS": "",
            "IVR_DATABASE__URL": database_url,
            "IVR_PROMPTS__DIR": str(tmp_path / "prompts"),
            "IVR_PROMPTS__WARM_AT_START": "false",
            "IVR_RECORDINGS__DIR": str(tmp_path / "recordings"),
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )


class Server:
    """One `ivr serve …` process with its output in a file."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str], *args: str) -> None:
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen([*IVR, "serve", *args], cwd=tmp_path, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self.web_port = int(env["IVR_WEB__PORT"])

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    async def wait_listening(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"ivr serve exited early with {self.process.returncode}:\n{self.output()}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"nothing listens on {port} after {timeout} s")

    async def health(self) -> dict:
        """GET /healthz on a new connection (so SO_REUSEPORT may pick any worker)."""

        def get() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=5) as response:
                return json.loads(response.read())

        return await asyncio.to_thread(get)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.alive():
            self.process.send_signal(sig)
        code = await asyncio.to_thread(self.process.wait, timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        self._log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
