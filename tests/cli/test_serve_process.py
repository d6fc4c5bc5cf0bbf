"""Smoke test of the real processes: `ivr serve --demo` in the background, `ivr call` against it, SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ivr.speech.warmup import LANGUAGES
from tests.cli.conftest import clean_environ
from tests.dialplans.sounds import missing_sounds

IVR = Path(sys.executable).with_name("ivr")
TOKEN = "smoke-t0ken"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"ivr serve exited early with {server.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


def get_json(port: int, path: str, timeout: float = 20.0):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_for_log(log, event: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the server's log has a line with ``event`` (the server says when it is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"ivr serve exited early with {server.returncode}"
        log.seek(0)
        if event in log.read():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {event} in the log after {timeout} s")


@pytest.mark.timeout(120)
def test_serve_call_and_sigterm(tmp_path):
    agi_port, web_port = free_port(), free_port()
    env = clean_environ(
        {
            "IVR_AGI__PORT": str(agi_port),
            "IVR_WEB__PORT": str(web_port),
            "IVR_WEB__API_TOKEN": TOKEN,
            "IVR_HOURS__OPEN": "00:00",  # operators always on duty: independent of the hour of the run
            "IVR_HOURS__CLOSE": "23:59:59.999999",
            "IVR_HOURS__DAYS": "1,2,3,4,5,6,7",
            "IVR_HOURS__HOLIDAYS": "",
            "IVR_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3",
            "IVR_PROMPTS__DIR": str(tmp_path / "prompts"),
            "IVR_PROMPTS__WARM_AT_START": "false",
        }
    )
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen([str(IVR), "serve", "--demo"], cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        wait_until_listening(agi_port, server)
        # Even with prompts.warm_at_start off, serve builds the sounds the dialplan names at start.
        wait_for_log(log, "prompts.named_ready", server)
        assert missing_sounds(tmp_path / "prompts", LANGUAGES) == []
        caller = subprocess.run(
            [str(IVR), "call", "+79161234567", "--port", str(agi_port), "--keys", "1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert caller.returncode == 0, caller.stdout + caller.stderr
        out = caller.stdout
        assert f"calling 127.0.0.1:{agi_port}/repeat-order as +79161234567" in out
        assert "robot: Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки" in out
        assert "caller: 1" in out
        assert "robot: Заказ номер А " in out and "одна тысяча четыреста рублей" in out
        assert "IVR_REASON=order_placed IVR_RESULT=done -> dialplan: Hangup()" in out
        assert "Traceback" not in caller.stderr

        deadline = time.monotonic() + 10  # the call row is closed just after the server hangs up
        while not (calls := get_json(web_port, "/api/v1/calls")["calls"]) or not calls[0]["outcome"]:
            assert time.monotonic() < deadline, calls
            time.sleep(0.05)
        assert [(c["customer_id"], c["outcome"]) for c in calls] == [("C001", "order_placed")]

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.seek(0)
        output = log.read()
        log.close()
    assert "Traceback" not in output, output
    assert "service_started" in output


def test_serve_on_a_taken_port_exits_with_a_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = clean_environ(
            {
                "IVR_AGI__PORT": str(port := taken.getsockname()[1]),
                "IVR_WEB__ENABLED": "false",
                "IVR_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3",
                "IVR_PROMPTS__DIR": str(tmp_path / "prompts"),
                "IVR_PROMPTS__WARM_AT_START": "false",
            }
        )
        result = subprocess.run([str(IVR), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 1
    assert f"ivr serve: FastAGI: cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
