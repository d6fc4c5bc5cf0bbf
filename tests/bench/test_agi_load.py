"""bench/agi_load.py in a few seconds: the spawn probe counts exactly, and a tiny paced run fills the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "bench" / "probe"


def test_spawn_probe_logs_every_program_a_python_process_starts(tmp_path: Path) -> None:
    log = tmp_path / "spawns.log"
    code = (
        "import asyncio, subprocess\n"
        "subprocess.run(['true'], check=True)\n"
        "async def main():\n"
        "    p = await asyncio.create_subprocess_exec('true')\n"
        "    await p.wait()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROBE), "IVR_BENCH_SPAWN_LOG": str(log)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["true", "true"]


def test_spawn_probe_is_silent_without_its_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IVR_BENCH_SPAWN_LOG"}
    env["PYTHONPATH"] = str(PROBE)
    subprocess.run(
        [sys.executable, "-c", "import subprocess; subprocess.run(['true'])"],
        env=env,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert list(tmp_path.iterdir()) == []


def test_a_small_paced_run_reports_echo_and_ivr_with_complete_records(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = subprocess.run(
        [
            sys.executable,
            "bench/agi_load.py",
            "--backend",
            "sqlite",
            "--rate",
            "5",
            "--duration",
            "1",
            "--json",
            str(out),
            "--deadline",
            "200",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| server | load | calls | calls/s |" in done.stdout  # the Markdown table
    runs = {r["server"]: r for r in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"echo", "ivr sqlite"}
    for run in runs.values():
        assert (run["calls"], run["completed"]) == (5, 5)
        assert run["scenario"] == "5.00/s × 1.00 s"
        assert run["arrival_late_ms"]["max"] is not None
    assert runs["echo"]["spawned"] == {}  # the floor starts no program
    ivr = runs["ivr sqlite"]
    assert ivr["records"]["complete"] == 5  # every call: row with an outcome, call.started ... call.ended
    assert ivr["tts_runs"] == sum(n for name, n in ivr["spawned"].items() if name in ("espeak-ng", "text2wave"))
    assert ivr["server_cpu_ms_per_call"] > 0
    assert "think_p99" in ivr["vs_echo"]
