"""The route security sweep: EVERY route registered on the web application, against an explicit access
table, on both backends. A route added without a row in ``ACCESS`` fails
``test_every_registered_route_has_an_access_row`` (and a row left behind for a removed route fails it
too), so nobody adds an unguarded route silently.

The rules the table spells out route by route:

* anonymous: pages answer 302 to ``/login``; ``/api/`` answers 401 (JSON ``unauthorized``);
* public (no session needed): ``/login`` (GET; POST checks its own double-submit token and the
  password), ``/healthz``, ``/static/*``, ``/`` (a redirect to the sign-in or the home page) and
  ``/metrics`` from the loopback address (the local Prometheus agent; from anywhere else it needs
  the API bearer token — see ``test_metrics_is_public_on_loopback_only``);
* roles: operator < supervisor < admin; a page the role may not open is the 403 page, an API route
  a 403 JSON ``forbidden``; an operator reads only their own operator card and feed;
* HEAD answers as GET does; the API bearer token opens every ``/api/`` route (no CSRF), a wrong one
  none.

Then: CSRF on every POST route, session fixation, and path traversal on /calls/{id}/recording.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from yarl import URL

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from ivr.web.common import TOKEN_KEY
from ivr.web.console.auth import COOKIE, LOGIN_COOKIE, auth_state
from ivr.web.console.login_throttle import LoginThrottle
from ivr.web.console.metrics import Metrics
from ivr.web.console.monitoring import metrics_endpoint
from tests.console.conftest import (
    API_TOKEN,
    PASSWORD,
    USERS,
    add_role_users,
    login,
    make_console_app,
    session_cookie,
    start_client,
)
from tests.traces import TRACES

WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"
SECRET = b"TOP-SECRET-NOT-A-RECORDING " * 20
ROLES = ("operator", "supervisor", "admin")
WS_OPEN = 101  # "status" of a WebSocket probe whose handshake succeeded


@dataclass(frozen=True)
class Probe:
    """One request and the status each caller must get. ``path`` may name fixture values in braces
    ({call}, {invoice}, {victim}); ``body`` is a form for pages, JSON for /api/."""

    path: str
    anonymous: int
    operator: int
    supervisor: int
    admin: int
    body: dict[str, Any] | None = None
    ws: bool = False
    login_token: bool = False  # POST /login: send a valid sign-in form token (its own double submit)
    last: bool = False  # ends the session: probed after every other route

    def expected(self, who: str) -> int:
        return getattr(self, who)


def page(path: str, *statuses: int, **kw: Any) -> Probe:
    return Probe(path, *statuses, **kw)


ANY = (200, 200, 200)
SUPERVISOR = (403, 200, 200)
ADMIN = (403, 403, 200)

# (method, route as registered) -> probes. HEAD routes are the GET rows' (aiohttp adds them): each GET
# probe is sent as HEAD too and must answer the same.
ACCESS: dict[tuple[str, str], list[Probe]] = {
    # --- public ---------------------------------------------------------------------------------------
    ("GET", "/"): [page("/", 302, 302, 302, 302)],  # -> /login, or the role's home
    ("GET", "/login"): [page("/login", 200, 302, 302, 302)],  # signed in: -> home
    ("POST", "/login"): [page("/login", 401, 401, 401, 401, login_token=True,
                              body={"username": "nobody", "password": "wrong-password"})],
    ("POST", "/logout"): [page("/logout", 303, 303, 303, 303, last=True)],
    ("GET", "/healthz"): [page("/healthz", 200, 200, 200, 200)],
    ("GET", "/metrics"): [page("/metrics", 200, 200, 200, 200)],  # the test client is on 127.0.0.1
    ("GET", "/static"): [page("/static/console.js", 200, 200, 200, 200),
                         page("/static/operator.js", 200, 200, 200, 200),
                         page("/static/player.js", 200, 200, 200, 200),
                         page("/static/no-such-file.js", 404, 404, 404, 404)],
    # --- pages ----------------------------------------------------------------------------------------
    ("GET", "/operator"): [page("/operator", 302, *ANY)],
    ("GET", "/customers"): [page("/customers?q=Иванов", 302, *ANY)],
    ("GET", "/customers/{customer_id}"): [page("/customers/C001", 302, *ANY)],
    ("GET", "/customers/{customer_id}/invoices/{number}.pdf"): [page("/customers/C001/invoices/{invoice}.pdf",
                                                                     302, *ANY)],
    # issue 10: customers made and corrected, orders placed and corrected (harmless bodies: refused)
    ("GET", "/customers/new"): [page("/customers/new?number=89260001122", 302, *ANY)],
    ("POST", "/customers/new"): [page("/customers/new", 302, 422, 422, 422, body={"last_name": "", "first_name": ""})],
    ("POST", "/customers/{customer_id}/phones"): [page("/customers/C001/phones", 302, 422, 422, 422,
                                                       body={"number": "12"})],
    ("POST", "/customers/{customer_id}/address"): [page("/customers/C001/address", 302, 422, 422, 422,
                                                        body={"address": " "})],
    ("GET", "/customers/{customer_id}/order"): [page("/customers/C001/order", 302, *ANY)],
    ("POST", "/customers/{customer_id}/order"): [page("/customers/C001/order", 302, 422, 422, 422,
                                                      body={"key": "k", "sku": "WATER-19", "quantity": "0"})],
    ("GET", "/customers/{customer_id}/orders/{order_id}"): [page("/customers/C001/orders/NO-SUCH", 302, 404, 404, 404)],
    ("POST", "/customers/{customer_id}/orders/{order_id}/edit"): [
        page("/customers/C001/orders/NO-SUCH/edit", 302, 404, 404, 404, body={"reason": "x"})],
    ("POST", "/customers/{customer_id}/orders/{order_id}/cancel"): [
        page("/customers/C001/orders/NO-SUCH/cancel", 302, 404, 404, 404, body={"reason": "x"})],
    ("POST", "/tasks/{task_id}/note"): [page("/tasks/999999/note", 302, 404, 404, 404, body={"note": "x"})],
    # issue 11: deals (an unknown deal is a 404 for everyone who may look; an unknown stage too)
    ("GET", "/deals"): [page("/deals?stage=new", 302, *ANY), page("/deals?stage=nonsense", 302, 404, 404, 404)],
    ("GET", "/deals/{deal_id}"): [page("/deals/999999", 302, 404, 404, 404)],
    ("POST", "/deals/{deal_id}/stage"): [page("/deals/999999/stage", 302, 404, 404, 404, body={"stage": "paid"})],
    ("GET", "/calls"): [page("/calls", 302, *ANY)],
    ("GET", "/calls/{call_id}"): [page("/calls/{call}", 302, *ANY)],
    ("GET", "/calls/{call_id}/recording"): [page("/calls/{call}/recording", 302, *SUPERVISOR)],
    ("GET", "/calls/{call_id}/recording/peaks"): [page("/calls/{call}/recording/peaks", 302, *SUPERVISOR)],
    ("GET", "/calls.csv"): [page("/calls.csv?outcome=order_placed", 302, *SUPERVISOR)],
    ("GET", "/calls.xlsx"): [page("/calls.xlsx?sort=-wait", 302, *SUPERVISOR)],
    ("GET", "/stats"): [page("/stats", 302, *SUPERVISOR)],
    ("GET", "/wallboard"): [page("/wallboard", 302, *SUPERVISOR)],
    ("GET", "/admin/users"): [page("/admin/users", 302, *ADMIN)],
    # admin POSTs: harmless bodies the handler refuses (422) or that change nothing (303)
    ("POST", "/admin/users"): [page("/admin/users", 302, 403, 403, 422,
                                    body={"username": "", "password": "x", "role": "operator"})],
    ("POST", "/admin/users/{user_id}/role"): [page("/admin/users/{victim}/role", 302, 403, 403, 422,
                                                   body={"role": "overlord"})],
    ("POST", "/admin/users/{user_id}/profile"): [page("/admin/users/{victim}/profile", 302, 403, 403, 422,
                                                      body={"display_name": "x", "operator_interface": "no!"})],
    ("POST", "/admin/users/{user_id}/active"): [page("/admin/users/{victim}/active", 302, 403, 403, 303,
                                                     body={"active": "1"})],
    ("POST", "/admin/users/{user_id}/password"): [page("/admin/users/{victim}/password", 302, 403, 403, 422,
                                                       body={"password": "short"})],
    # the CRM bridge's dead letters (no target in the rig: the page says so; no row to retry: 404)
    ("GET", "/admin/crm"): [page("/admin/crm", 302, *ADMIN)],
    ("POST", "/admin/crm/{item_id}/retry"): [page("/admin/crm/999999/retry", 302, 403, 403, 404, body={})],
    # a CRM fetches a recording by a signed link alone: no session needed, nothing without a valid token
    ("GET", "/r/{token}"): [page("/r/not-a-token", 404, 404, 404, 404)],
    # --- API ------------------------------------------------------------------------------------------
    ("GET", "/api/v1/me"): [page("/api/v1/me", 401, *ANY)],
    ("GET", "/api/v1/customers/{customer_id}"): [page("/api/v1/customers/C001", 401, *ANY)],
    ("GET", "/api/v1/calls"): [page("/api/v1/calls", 401, *ANY)],
    ("GET", "/api/v1/calls/{call_id}/timeline"): [page("/api/v1/calls/{call}/timeline", 401, *ANY)],
    ("GET", "/api/v1/tasks"): [page("/api/v1/tasks", 401, *ANY)],
    ("GET", "/api/v1/deals"): [page("/api/v1/deals?stage=new", 401, *ANY)],
    ("GET", "/api/v1/deals/{deal_id}"): [page("/api/v1/deals/999999", 401, 404, 404, 404)],
    ("POST", "/api/v1/deals/{deal_id}/stage"): [page("/api/v1/deals/999999/stage", 401, 404, 404, 404,
                                                     body={"stage": "paid"})],
    ("POST", "/api/v1/tasks/{task_id}"): [page("/api/v1/tasks/999999", 401, 404, 404, 404,
                                               body={"status": "done"})],
    ("POST", "/api/v1/customers/{customer_id}/orders"): [  # no Idempotency-Key: 400, nothing placed
        page("/api/v1/customers/C001/orders", 401, 400, 400, 400, body={"lines": [{"sku": "WATER-19",
                                                                                    "quantity": 1}]})],
    ("GET", "/api/v1/operators/{operator}/current"): [page("/api/v1/operators/101/current", 401, *ANY),
                                                      page("/api/v1/operators/102/current", 401, 403, 200, 200)],
    ("GET", "/api/v1/operators/{operator}/feed"): [
        page("/api/v1/operators/101/feed", 401, WS_OPEN, WS_OPEN, WS_OPEN, ws=True),
        page("/api/v1/operators/102/feed", 401, 403, WS_OPEN, WS_OPEN, ws=True),
        page("/api/v1/operators/102/feed", 401, 403, 400, 400),  # plain GET/HEAD: not a WebSocket handshake
    ],
    ("GET", "/api/v1/stats"): [page("/api/v1/stats", 401, *SUPERVISOR)],
    ("GET", "/api/v1/stats.csv"): [page("/api/v1/stats.csv", 401, *SUPERVISOR)],
    ("GET", "/api/v1/wallboard"): [page("/api/v1/wallboard", 401, *SUPERVISOR)],
}


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None, route
        routes.add((route.method, route.resource.canonical))
    return routes


# --- the rig ------------------------------------------------------------------------------------------


@dataclass
class Rig:
    app: web.Application
    store: Any
    recordings: Path
    values: dict[str, str] = field(default_factory=dict)

    def url(self, probe: Probe) -> str:
        return probe.path.format(**self.values)


async def add_call(store, call_id: str, recording_path: str | None) -> None:
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    await store.record_call_start(call_id=call_id, caller_number="+79161234567", normalized_number="+79161234567",
                                  customer_id="C001", channel="PJSIP/trunk-1", script="repeat-order", started_at=at)
    await store.update_call(call_id, facts=facts_implying("operator_answered"), operator_interface="PJSIP/101",
                            recording_path=recording_path, recording_seconds=6.8, recording_bytes=1000)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """tmp/recordings/ holds the real recording and a symlink pointing out; tmp/secret.wav is outside."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copyfile(WAV, recordings / "call-ok.wav")
    (tmp_path / "secret.wav").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.wav", recordings / "link-out.wav")
    os.symlink(tmp_path, recordings / "dir-out")
    return recordings


@pytest.fixture
async def rig(store, spool) -> Rig:
    health = {"agi": {"listening": True, "active_calls": 0}, "ami": {"status": "connected"}}
    app = make_console_app(store, recordings_dir=spool, metrics=Metrics(), health=lambda: health)
    # the sweep signs in wrongly on purpose
    auth_state(app).throttle = LoginThrottle(account_free=10_000, address_free=10_000)
    await add_role_users(app)
    victim = await auth_state(app).accounts.create_user("victim", PASSWORD, "operator", "Жертва", "PJSIP/109")
    await load_demo_data(store.sessions)
    placed = await store.place_order(idempotency_key="sweep-1", customer_id="C001", lines=[("WATER-19", 1)],
                                     source="operator")
    assert placed.invoice is not None
    await add_call(store, "1700000000.1", str(spool / "call-ok.wav"))
    return Rig(app=app, store=store, recordings=spool,
               values={"call": "1700000000.1", "invoice": placed.invoice.number, "victim": str(victim.id)})


async def anonymous_client(rig: Rig) -> TestClient:
    return await start_client(rig.app)


async def signed_in(rig: Rig, role: str) -> tuple[TestClient, str]:
    client = await start_client(rig.app)
    csrf = await login(client, USERS[role], PASSWORD)
    return client, csrf


_LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def send(client: TestClient, rig: Rig, method: str, probe: Probe, csrf: str | None,
               headers: dict[str, str] | None = None) -> tuple[int, aiohttp.ClientResponse | None, bytes]:
    """The probe's request; (status, response, body). A WebSocket probe's status is 101 when it opened."""
    url = rig.url(probe)
    headers = dict(headers or {})
    if probe.ws:
        try:
            ws = await client.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, None, b""
        await ws.receive(timeout=5)  # the current card, at once
        await ws.close()
        return WS_OPEN, None, b""
    kwargs: dict[str, Any] = {"allow_redirects": False, "headers": headers}
    if method == "POST":
        body = dict(probe.body or {})
        if probe.login_token:
            # the form's own token, as a browser has it: from the sign-in page, or (signed in: the
            # page redirects home) any well-formed value set as the ivr_login cookie
            form = await client.get("/login", allow_redirects=False)
            found = _LOGIN_TOKEN.search(await form.text()) if form.status == 200 else None
            if found is not None:
                body["csrf_token"] = found.group(1)
            else:
                client.session.cookie_jar.update_cookies({LOGIN_COOKIE: "L" * 43})
                body["csrf_token"] = "L" * 43
        if url.startswith("/api/"):
            if csrf is not None:
                headers["X-CSRF-Token"] = csrf
            kwargs["json"] = body
        else:
            if csrf is not None and not probe.login_token:
                body["csrf_token"] = csrf
            kwargs["data"] = body
    response = await client.request(method, url, **kwargs)
    data = await response.read()
    return response.status, response, data


def check_refusal(who: str, url: str, status: int, response: aiohttp.ClientResponse | None, body: bytes) -> None:
    """What a refusal looks like: the sign-in redirect, 401 JSON, the 403 page or the 403 JSON."""
    if response is None:
        return
    api = url.startswith("/api/")
    if status == 302:
        location = response.headers.get("Location", "")
        if who == "anonymous" and not url.startswith(("/login", "/?", "/static")) and url != "/":
            assert location.startswith("/login"), (who, url, location)
        elif who != "anonymous":
            assert not location.startswith("/login"), f"{who} lost the session on {url}: {location}"
    if response.method == "HEAD":
        return
    if status == 401 and api:
        assert b'"unauthorized"' in body, (who, url, body[:200])
    if status == 403:
        if api:
            assert b'"forbidden"' in body, (who, url, body[:200])
        else:
            assert "Доступ запрещён" in body.decode(), (who, url)
    if status in (401, 403, 302):
        assert b"RIFF" not in body and b"%PDF" not in body, f"{who} got file bytes from {url}"


# --- the table is complete ------------------------------------------------------------------------------


async def test_every_registered_route_has_an_access_row(store):
    app = make_console_app(store, metrics=Metrics())
    registered = registered_routes(app)
    table = set(ACCESS)
    unguarded = sorted(r for r in registered if r[0] != "HEAD" and r not in table)
    assert not unguarded, f"routes without a row in ACCESS (decide who may call them, then add the row): {unguarded}"
    stale = sorted(table - registered)
    assert not stale, f"rows in ACCESS for routes that no longer exist: {stale}"
    heads = sorted(r for r in registered if r[0] == "HEAD" and ("GET", r[1]) not in table)
    assert not heads, f"HEAD routes without a GET row: {heads}"
    methods = {m for m, _ in registered}
    assert methods <= {"GET", "HEAD", "POST"}, f"new methods need CSRF and table coverage: {methods}"


def test_the_sweep_notices_a_route_added_without_a_row(store):
    """The completeness check above is not vacuous: a new route makes it fail."""
    app = make_console_app(store, metrics=Metrics())

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/reports/secret", handler)
    app.router.add_post("/api/v1/new-thing", handler)
    missing = sorted(r for r in registered_routes(app) if r[0] != "HEAD" and r not in ACCESS)
    assert missing == [("GET", "/reports/secret"), ("POST", "/api/v1/new-thing")]


# --- the access matrix ----------------------------------------------------------------------------------


def _probes() -> list[tuple[str, Probe]]:
    out = []
    for (method, _), probes in ACCESS.items():
        for probe in probes:
            out.append((method, probe))
            if method == "GET" and not probe.ws:
                out.append(("HEAD", probe))
    return sorted(out, key=lambda item: item[1].last)  # the sign-out last


async def test_access_matrix_anonymous_and_every_role(rig):
    failures: list[str] = []
    checked = 0
    for who in ("anonymous", *ROLES):
        if who == "anonymous":
            client, csrf = await anonymous_client(rig), None
        else:
            client, csrf = await signed_in(rig, who)
        try:
            for method, probe in _probes():
                status, response, body = await send(client, rig, method, probe, csrf)
                checked += 1
                expected = probe.expected(who)
                if status != expected:
                    failures.append(f"{who:10} {method:4} {rig.url(probe)}: {status}, expected {expected}")
                    continue
                check_refusal(who, rig.url(probe), status, response, body)
        finally:
            await client.close()
    assert not failures, "access matrix broken:\n" + "\n".join(failures)
    assert checked > 150


async def test_the_bearer_token_opens_every_api_route_and_a_wrong_one_none(rig):
    """Machine clients: the bearer token passes every /api/ route like an admin (no CSRF); a wrong token
    is refused everywhere, even on routes a session could use."""
    client = await anonymous_client(rig)
    failures = []
    try:
        for method, probe in _probes():
            if not probe.path.startswith("/api/"):
                continue
            good = {"Authorization": f"Bearer {API_TOKEN}"}
            status, _, _ = await send(client, rig, method, probe, None, good)
            if status != probe.admin:
                failures.append(f"token {method} {rig.url(probe)}: {status}, expected {probe.admin}")
            status, _, _ = await send(client, rig, method, probe, None, {"Authorization": "Bearer wrong"})
            if status != 401:
                failures.append(f"wrong token {method} {rig.url(probe)}: {status}, expected 401")
    finally:
        await client.close()
    assert not failures, "\n".join(failures)


async def test_metrics_is_public_on_loopback_only(rig):
    """/metrics needs no secret from 127.0.0.1 / ::1 (the local Prometheus agent); from any other
    address it needs the API bearer token."""
    for remote, headers, status in [
        ("127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("::ffff:127.0.0.1", {}, 200),
        ("10.0.0.7", {}, 403),
        ("192.168.1.20", {"Authorization": "Bearer wrong"}, 403),
        ("10.0.0.7", {"Authorization": f"Bearer {API_TOKEN}"}, 200),
        ("127.0.0.1", {"Authorization": "Bearer wrong"}, 403),  # a token sent is checked, even locally
    ]:
        request = make_mocked_request("GET", "/metrics", headers=headers, app=rig.app)
        request = request.clone(remote=remote)
        assert request.app[TOKEN_KEY] == API_TOKEN
        response = await metrics_endpoint(request)
        assert response.status == status, (remote, headers, response.status)


async def test_static_files_do_not_escape_their_directory(rig):
    client = await anonymous_client(rig)
    try:
        for path in ("/static/../render.py", "/static/%2e%2e/render.py", "/static/..%2frender.py",
                     "/static/%2e%2e%2f%2e%2e%2fapp.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd"):
            response = await raw_get(client, path)
            body = await response.read()
            assert response.status in (403, 404), (path, response.status)
            assert b"def render" not in body and b"root:" not in body, path
    finally:
        await client.close()


# --- CSRF -----------------------------------------------------------------------------------------------


async def test_every_post_route_refuses_a_session_request_without_its_csrf_token(rig, store):
    """Signed in as admin (so the role never is the reason), every POST route is refused without the
    session's CSRF token and with the token of another session; nothing changes."""
    posts = sorted(r for r in registered_routes(rig.app) if r[0] == "POST")
    assert len(posts) >= 9
    client, _ = await signed_in(rig, "admin")
    other, other_csrf = await signed_in(rig, "admin")  # another browser, another session
    stranger = await anonymous_client(rig)
    try:
        for route in posts:
            probe = ACCESS[route][0]
            url = rig.url(probe)
            if route == ("POST", "/login"):
                # the sign-in form's own double-submit token: missing, or another browser's, is refused
                form = await stranger.get("/login")
                foreign_token = _LOGIN_TOKEN.search(await form.text()).group(1)
                anonymous = await anonymous_client(rig)
                try:
                    await anonymous.get("/login")  # has its own ivr_login cookie now
                    creds = {"username": USERS["admin"], "password": PASSWORD}
                    for extra in ({}, {"csrf_token": foreign_token}):
                        response = await anonymous.post(url, data={**creds, **extra}, allow_redirects=False)
                        assert response.status == 403, (url, extra, response.status)
                        assert COOKIE not in response.cookies
                finally:
                    await anonymous.close()
                continue
            api = url.startswith("/api/")
            attempts: list[dict[str, Any]] = []
            if api:
                attempts = [{"json": probe.body, "headers": {}},
                            {"json": probe.body, "headers": {"X-CSRF-Token": other_csrf}},
                            {"json": probe.body, "headers": {"X-CSRF-Token": ""}}]
            else:
                attempts = [{"data": dict(probe.body or {})},
                            {"data": {**(probe.body or {}), "csrf_token": other_csrf}},
                            {"data": dict(probe.body or {}), "headers": {"X-CSRF-Token": other_csrf}},
                            {"data": {**(probe.body or {}), "csrf_token": ""}}]
            for attempt in attempts:
                response = await client.post(url, allow_redirects=False, **attempt)
                body = await response.text()
                assert response.status == 403, (url, attempt, response.status)
                if api:
                    assert '"csrf_failed"' in body, (url, body)
                else:
                    assert "Форма устарела" in body, (url, body[:300])
        # nothing happened: the session lives (logout was refused), no order, the victim untouched
        assert (await client.get("/api/v1/me")).status == 200
        assert (await other.get("/api/v1/me")).status == 200
        card = await store.get_customer_card("C001")
        assert [o.source for o in card.orders].count("operator") == 1  # the rig's own invoice order only
        victim = await auth_state(rig.app).accounts.get_user(int(rig.values["victim"]))
        assert victim.role == "operator" and victim.display_name == "Жертва" and victim.active
        assert await auth_state(rig.app).accounts.authenticate("victim", PASSWORD) is not None
    finally:
        await client.close()
        await other.close()
        await stranger.close()


# --- session fixation -----------------------------------------------------------------------------------


async def test_a_cookie_from_before_sign_in_is_never_kept(rig):
    attacker, _ = await signed_in(rig, "operator")
    victim = await anonymous_client(rig)
    try:
        known = session_cookie(attacker)
        for planted in (known, "F" * 43):
            victim.session.cookie_jar.clear()
            form = await victim.get("/login")
            token = _LOGIN_TOKEN.search(await form.text()).group(1)
            victim.session.cookie_jar.update_cookies({COOKIE: planted})  # planted before the sign-in
            response = await victim.post("/login", data={"csrf_token": token, "username": USERS["supervisor"],
                                                         "password": PASSWORD}, allow_redirects=False)
            assert response.status == 303
            fresh = response.cookies[COOKIE].value
            assert fresh and fresh != planted
            # each cookie on its own, in a browser holding only that one: the fresh one is sup1's
            # session, the planted one opens nothing
            for value, status in ((fresh, 200), (planted, 401)):
                replayer = await anonymous_client(rig)
                try:
                    replayer.session.cookie_jar.update_cookies({COOKIE: value})
                    me = await replayer.get("/api/v1/me")
                    assert me.status == status, (value == fresh, me.status)
                    if status == 200:
                        assert (await me.json())["user"]["username"] == USERS["supervisor"]
                    else:
                        assert (await replayer.get("/calls", allow_redirects=False)).status == 302
                finally:
                    await replayer.close()
        assert (await attacker.get("/api/v1/me")).status == 401  # its session was deleted at the victim's sign-in
    finally:
        await attacker.close()
        await victim.close()


# --- path traversal on recordings -----------------------------------------------------------------------


@pytest.fixture
async def traversal(rig) -> dict[str, str]:
    """call id -> its crafted recording_path (all but the control point outside the directory)."""
    outside = rig.recordings.parent
    crafted = {
        "1700000001.1": "../../etc/passwd",
        "1700000001.2": "/etc/passwd",
        "1700000001.3": "../secret.wav",
        "1700000001.4": str(outside / "secret.wav"),
        "1700000001.5": "link-out.wav",  # a symlink in the directory pointing outside
        "1700000001.6": str(rig.recordings / "link-out.wav"),
        "1700000001.7": "dir-out/secret.wav",  # through a symlinked directory
        "1700000001.8": f"{rig.recordings}/../secret.wav",
        "1700000001.9": "%2e%2e/secret.wav",  # no URL decoding happens on a path from the database
        "1700000001.10": "sub/../../secret.wav",
        "1700000001.11": str(rig.recordings),  # the directory itself
        "1700000001.12": "/var/spool/asterisk/monitor/../../../../etc/passwd",
    }
    for call_id, path in crafted.items():
        await add_call(rig.store, call_id, path)
    return crafted


async def test_recording_paths_outside_the_directory_are_404_without_bytes(rig, traversal):
    client, _ = await signed_in(rig, "supervisor")
    try:
        control = await client.get("/calls/1700000000.1/recording")
        assert control.status == 200 and (await control.read())[:4] == b"RIFF"  # the 404s below are not vacuous
        for call_id, recording_path in traversal.items():
            for headers in ({}, {"Range": "bytes=0-"}):
                response = await client.get(f"/calls/{call_id}/recording", headers=headers, allow_redirects=False)
                body = await response.read()
                assert response.status == 404, (recording_path, headers, response.status)
                assert SECRET[:20] not in body and b"root:" not in body and b"RIFF" not in body, recording_path
                assert "Content-Range" not in response.headers
    finally:
        await client.close()


async def raw_get(client: TestClient, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
    """GET ``path`` byte for byte: no client-side decoding or dot-segment removal (yarl would turn
    ``/calls/%2e%2e/recording`` into ``/recording`` before sending)."""
    url = URL(f"http://{client.host}:{client.port}{path}", encoded=True)
    return await client.session.get(url, allow_redirects=False, **kwargs)


@pytest.mark.parametrize("crafted", [
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2Fsecret.wav",
    "%2e%2e%2fsecret.wav",
    "%2e%2e%2frecordings%2fcall-ok.wav",
    ".%2e",
    "1700000000.1%00",
    "1700000000.1%2f..",
    "%2fetc%2fpasswd",
])
async def test_url_encoded_dots_in_the_call_id_are_404_without_bytes(rig, traversal, crafted):
    client, _ = await signed_in(rig, "supervisor")
    try:
        for path in (f"/calls/{crafted}/recording", f"/calls/{crafted}"):
            response = await raw_get(client, path)
            body = await response.read()
            assert response.status == 404, (path, response.status)
            assert SECRET[:20] not in body and b"root:" not in body and b"RIFF" not in body, path
    finally:
        await client.close()
