"""`ivr serve` refuses to listen beyond loopback with the shipped API token or a demo password
(issue 10, point 10), through the real entry point on a tmp SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from crm_bridge.accounts import AccountStore
from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.demo import create_demo_users, demo_passwords_in_use
from ivr.exposure import is_loopback, refusal
from ivr.settings import default_settings
from tests.console.conftest import FAST_HASHER


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.10", False), ("ivr.example.internal", False),
])
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("web", "agi", "demo", "refused"), [
    ({}, {}, ["admin"], False),  # the laptop demo: everything on 127.0.0.1
    ({"host": "0.0.0.0"}, {}, [], True),  # the shipped token
    ({"host": "0.0.0.0", "enabled": False}, {}, [], False),  # no web console: its token guards nothing
    ({"host": "0.0.0.0", "api_token": "x" * 40}, {}, [], False),
    ({"host": "0.0.0.0", "api_token": "x" * 40}, {}, ["operator"], True),
    ({"api_token": "x" * 40}, {"host": "0.0.0.0"}, ["operator"], True),
    ({}, {"host": "10.0.0.5"}, [], True),
])
def test_refusal_table(web, agi, demo, refused):
    settings = default_settings().replace(web=web, agi=agi)
    assert (refusal(settings, demo) is not None) is refused


def test_the_line_says_what_to_change():
    settings = default_settings().replace(web={"host": "0.0.0.0"})
    line = refusal(settings, ["admin", "operator"])
    assert line == (
        "ivr serve: refusing to listen beyond loopback (web.host = '0.0.0.0') with default secrets: "
        "set web.api_token (IVR_WEB__API_TOKEN) to a long random value, not 'change-me'; "
        "change the demo password of admin, operator (ivr users passwd NAME) or deactivate them "
        "(or listen on 127.0.0.1)"
    )


def test_serve_on_every_interface_with_the_shipped_token_exits_with_one_line(ivr_env, monkeypatch):
    monkeypatch.setenv("IVR_AGI__HOST", "0.0.0.0")
    run = ivr_env.run("serve")
    assert run.code == 2
    (line,) = [line for line in run.err.splitlines() if line.startswith("ivr serve")]
    assert "agi.host = '0.0.0.0'" in line and "IVR_WEB__API_TOKEN" in line
    assert "Traceback" not in run.err


def test_serve_demo_beyond_loopback_is_refused_for_the_demo_passwords(ivr_env, monkeypatch):
    monkeypatch.setenv("IVR_WEB__ENABLED", "true")
    monkeypatch.setenv("IVR_WEB__HOST", "0.0.0.0")
    monkeypatch.setenv("IVR_WEB__API_TOKEN", "a-real-token-of-the-deployment")
    run = ivr_env.run("serve", "--demo")
    assert run.code == 2
    assert "change the demo password of admin, supervisor, operator" in run.err
    assert "api_token" not in run.err.splitlines()[-1]  # the token is fine: not listed


def test_demo_passwords_changed_or_deactivated_no_longer_count(tmp_path):
    async def scenario() -> list[list[str]]:
        url = f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3"
        await upgrade(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        try:
            seen = [await demo_passwords_in_use(sessions)]
            await create_demo_users(sessions)
            seen.append(await demo_passwords_in_use(sessions))
            accounts = AccountStore(sessions, FAST_HASHER)
            admin = await accounts.get_user_by_username("admin")
            operator = await accounts.get_user_by_username("operator")
            await accounts.set_password(admin.id, "a much better password")
            await accounts.update_user(operator.id, active=False)
            seen.append(await demo_passwords_in_use(sessions))
            return seen
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == [[], ["admin", "supervisor", "operator"], ["supervisor"]]
