"""Console fixtures shared by every console test: the web app with one user per role, a browser-like
client and ``login()``.

    async def test_something(console_client):
        csrf = await login(console_client, "sup1", PASSWORD)
        page = await console_client.get("/stats")
        reply = await console_client.post("/api/v1/…", json={…}, headers={"X-CSRF-Token": csrf})

Users (all with the password ``PASSWORD``): operator ``op1`` (interface PJSIP/101), supervisor
``sup1``, admin ``adm1``. Argon2 runs with cheap parameters here (``FAST_HASHER``), so a sign-in
costs milliseconds; production uses argon2-cffi's defaults.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from ivr.calls.screen_pop import OperatorBoard
from ivr.web.api import build_web_app
from ivr.web.console.auth import COOKIE, auth_state
from ivr.web.console.deps import ConsoleDeps

API_TOKEN = "t"
PASSWORD = "Pa55word!"
USERS = {"operator": "op1", "supervisor": "sup1", "admin": "adm1"}
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

_LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """A settable clock for sessions and the sign-in rate limit: ``auth_state(app).clock = clock``."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_console_app(store, *, cookie_secure: bool = False, **deps) -> web.Application:
    board = OperatorBoard(store)
    console = ConsoleDeps(store=store, board=board, cookie_secure=cookie_secure, **deps)
    app = build_web_app(store, api_token=API_TOKEN, board=board, console=console)
    auth_state(app).accounts.hasher = FAST_HASHER
    return app


async def add_role_users(app: web.Application) -> None:
    accounts = auth_state(app).accounts
    await accounts.create_user("op1", PASSWORD, "operator", "Ольга Операторова", "PJSIP/101")
    await accounts.create_user("sup1", PASSWORD, "supervisor", "Сергей Старший")
    await accounts.create_user("adm1", PASSWORD, "admin", "Анна Админова")


@pytest.fixture
async def console_app(store) -> web.Application:
    """The whole web app (API + console) on the ``store`` fixture, with op1 / sup1 / adm1.
    Not started yet: a test may still add routes before making a client."""
    app = make_console_app(store)
    await add_role_users(app)
    return app


async def start_client(app: web.Application) -> TestClient:
    # unsafe=True: the test server is an IP address, which a default cookie jar refuses to store cookies for.
    client = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return client


@pytest.fixture
async def console_client(console_app) -> AsyncIterator[TestClient]:
    client = await start_client(console_app)
    yield client
    await client.close()


async def login_response(client: TestClient, username: str, password: str, *, next_path: str = "",
                         headers: dict[str, str] | None = None):
    """GET the sign-in form (for its token), POST it; the raw response (redirects not followed).
    A client already signed in first forgets its cookies (as a fresh browser would)."""
    form = await client.get("/login", allow_redirects=False)
    if form.status == 302:
        client.session.cookie_jar.clear()
        form = await client.get("/login", allow_redirects=False)
    match = _LOGIN_TOKEN.search(await form.text()) if form.status == 200 else None
    data = {"csrf_token": match.group(1) if match else "", "username": username, "password": password,
            "next": next_path}
    return await client.post("/login", data=data, allow_redirects=False, headers=headers or {})


async def login(client: TestClient, username: str, password: str) -> str:
    """Signs ``client`` in; returns the session's CSRF token (send it as X-CSRF-Token or csrf_token)."""
    response = await login_response(client, username, password)
    assert response.status == 303, f"sign-in of {username} failed: {response.status}"
    me = await client.get("/api/v1/me")
    assert me.status == 200
    return (await me.json())["csrf_token"]


def session_cookie(client: TestClient) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    return None
