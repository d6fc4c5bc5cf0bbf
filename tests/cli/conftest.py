"""The `ivr` entry point, run in-process (``ivr.cli.main``) with every path pointing under tmp_path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from ivr.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class IvrEnv:
    root: Path
    db_path: Path
    db_url: str
    prompts_dir: Path
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> Run:
        self.capsys.readouterr()  # drop what came before
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)


ROOT = Path(__file__).resolve().parents[2]


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without any IVR_ setting of the developer's shell, plus ``extra``; the processes
    import this checkout's packages (PYTHONPATH), not whichever tree the `ivr` script was installed
    from (an editable install of another worktree)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    # A generous silence budget (tests/calls/harness.py says why): on a loaded machine the first
    # syntheses of a fresh prompts dir must not send a test's caller to an operator.
    env["IVR_FLOW__MAX_SILENCE"] = "10"
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """`main` configures structlog globally; keep that from leaking into the tests that run after."""
    saved = structlog.get_config()
    real_configure = structlog.configure

    def configure(**kwargs):
        real_configure(**{**kwargs, "cache_logger_on_first_use": False})

    monkeypatch.setattr(structlog, "configure", configure)
    yield
    real_configure(**saved)


@pytest.fixture
def ivr_env(tmp_path, monkeypatch, capsys) -> IvrEnv:
    for key in list(os.environ):
        if key.startswith("IVR_") and key != "IVR_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    db_path = tmp_path / "ivr.sqlite3"
    db_url = f"sqlite+aiosqlite:///{db_path}"
    prompts_dir = tmp_path / "prompts"
    monkeypatch.setenv("IVR_DATABASE__URL", db_url)
    monkeypatch.setenv("IVR_PROMPTS__DIR", str(prompts_dir))
    monkeypatch.setenv("IVR_PROMPTS__WARM_AT_START", "false")
    monkeypatch.setenv("IVR_WEB__ENABLED", "false")
    monkeypatch.chdir(tmp_path)  # nothing may land in the checkout (var/…)
    return IvrEnv(tmp_path, db_path, db_url, prompts_dir, capsys)
