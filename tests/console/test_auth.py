"""Console sign-in, sessions, CSRF and roles over real HTTP (aiohttp TestServer), on both backends."""

from __future__ import annotations

import hashlib
import re
from http.cookies import SimpleCookie

import aiohttp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from crm_bridge.demo import load_demo_data
from crm_bridge.models import User as UserRow
from crm_bridge.models import WebSession
from ivr.web.console.auth import COOKIE, HOME, LOGIN_COOKIE, auth_state, require
from tests.console.conftest import (
    API_TOKEN,
    PASSWORD,
    USERS,
    Clock,
    add_role_users,
    login,
    login_response,
    make_console_app,
    session_cookie,
    start_client,
)

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def set_cookie_header(response, name: str) -> str:
    for header in response.headers.getall("Set-Cookie", []):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.getall('Set-Cookie', [])}")


def cookie_value(response, name: str) -> str:
    cookie = SimpleCookie()
    cookie.load(set_cookie_header(response, name))
    return cookie[name].value


async def session_rows(store) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(WebSession))


async def user_id(app, username: str) -> int:
    account = await auth_state(app).accounts.get_user_by_username(username)
    assert account is not None
    return account.id


# --- sign-in and sign-out -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "supervisor", "admin"])
async def test_login_and_logout_per_role(console_client, role):
    username = USERS[role]
    response = await login_response(console_client, username, PASSWORD)
    assert response.status == 303
    assert response.headers["Location"] == HOME[role]
    me = await (await console_client.get("/api/v1/me")).json()
    assert me["user"]["username"] == username and me["user"]["role"] == role
    csrf = me["csrf_token"]
    assert len(csrf) >= 32

    home = await console_client.get("/", allow_redirects=False)
    assert home.headers["Location"] == HOME[role]
    again = await console_client.get("/login", allow_redirects=False)  # signed in: no form, straight home
    assert again.status == 302 and again.headers["Location"] == HOME[role]

    out = await console_client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert 'ivr_session=""' in set_cookie_header(out, COOKIE) or "Max-Age=0" in set_cookie_header(out, COOKIE)
    assert session_cookie(console_client) is None
    assert (await console_client.get("/api/v1/me")).status == 401


async def test_home_without_a_session_goes_to_login(console_client):
    response = await console_client.get("/", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/login"


async def test_wrong_password_is_refused(console_client, store):
    response = await login_response(console_client, "op1", "not-the-password")
    assert response.status == 401
    assert "Неверное имя пользователя или пароль" in await response.text()
    assert session_cookie(console_client) is None
    assert await session_rows(store) == 0


async def test_unknown_user_gets_the_same_answer_after_a_full_verify(console_app, store):
    hasher = auth_state(console_app).accounts.hasher
    calls = []

    class Counting(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002  (argon2's own parameter name)
            calls.append(hash)
            return super().verify(hash, password)

    auth_state(console_app).accounts.hasher = Counting(time_cost=hasher.time_cost, memory_cost=hasher.memory_cost,
                                                       parallelism=hasher.parallelism)
    client = await start_client(console_app)
    try:
        response = await login_response(client, "nobody", PASSWORD)
        assert response.status == 401
        assert "Неверное имя пользователя или пароль" in await response.text()
        assert len(calls) == 1 and calls[0].startswith("$argon2id$")  # a dummy hash was verified
        wrong = await login_response(client, "op1", "wrong-password")
        assert wrong.status == 401
        assert len(calls) == 2
    finally:
        await client.close()
    assert await session_rows(store) == 0


async def test_username_is_case_insensitive(console_client):
    response = await login_response(console_client, "  OP1 ", PASSWORD)
    assert response.status == 303


async def test_login_form_needs_its_own_token(console_client):
    response = await console_client.post("/login", data={"username": "op1", "password": PASSWORD},
                                         allow_redirects=False)
    assert response.status == 403
    assert session_cookie(console_client) is None
    form = await console_client.get("/login")
    token = _CSRF_FIELD.search(await form.text()).group(1)
    wrong = await console_client.post("/login", data={"csrf_token": token + "x", "username": "op1",
                                                      "password": PASSWORD}, allow_redirects=False)
    assert wrong.status == 403


async def test_login_from_a_foreign_origin_is_refused(console_client):
    response = await login_response(console_client, "op1", PASSWORD, headers={"Origin": "https://evil.example"})
    assert response.status == 403
    assert session_cookie(console_client) is None


# The sign-in throttle: tests/console/test_login_throttle.py.


# --- sessions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [True, False])
async def test_cookie_flags(store, secure):
    app = make_console_app(store, cookie_secure=secure)
    await add_role_users(app)
    client = await start_client(app)
    try:
        form = await client.get("/login")
        token = _CSRF_FIELD.search(await form.text()).group(1)
        assert cookie_value(form, LOGIN_COOKIE) == token
        # the client's jar keeps Secure cookies away from http://: send the form's cookie by hand
        response = await client.post("/login", data={"csrf_token": token, "username": "op1", "password": PASSWORD},
                                     headers={"Cookie": f"{LOGIN_COOKIE}={token}"}, allow_redirects=False)
        assert response.status == 303
        header = set_cookie_header(response, COOKIE)
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
        assert "httponly" in attributes
        assert ("secure" in attributes) is secure
        assert attributes["samesite"].lower() == "samesite=lax"
        assert attributes["path"] == "Path=/"
        token = cookie_value(response, COOKIE)
        assert len(token) >= 40
        async with store.sessions() as session:
            ids = (await session.execute(select(WebSession.id))).scalars().all()
        assert ids == [hashlib.sha256(token.encode()).hexdigest()]  # only the token's hash is stored
    finally:
        await client.close()


async def test_session_fixation_a_planted_cookie_is_never_promoted(console_app, store):
    victim = await start_client(console_app)
    attacker = await start_client(console_app)
    try:
        await login(attacker, "op1", PASSWORD)
        planted = session_cookie(attacker)
        assert planted
        form = await victim.get("/login")
        token = _CSRF_FIELD.search(await form.text()).group(1)
        victim.session.cookie_jar.update_cookies({COOKIE: planted})  # the attacker's known session id
        response = await victim.post("/login", data={"csrf_token": token, "username": "sup1", "password": PASSWORD},
                                     allow_redirects=False)
        assert response.status == 303
        fresh = cookie_value(response, COOKIE)
        assert fresh != planted
        # the planted session is gone server-side: the attacker is signed out, not signed in as sup1
        assert (await attacker.get("/api/v1/me")).status == 401
        me = await (await victim.get("/api/v1/me")).json()
        assert me["user"]["username"] == "sup1"

        # an invented cookie value is not promoted either
        victim.session.cookie_jar.clear()
        victim.session.cookie_jar.update_cookies({COOKIE: "A" * 43})
        second = await login_response(victim, "adm1", PASSWORD)
        assert cookie_value(second, COOKIE) != "A" * 43
    finally:
        await victim.close()
        await attacker.close()


async def test_logout_kills_the_session_server_side(console_client, store):
    csrf = await login(console_client, "adm1", PASSWORD)
    old = session_cookie(console_client)
    assert (await console_client.get("/admin/users")).status == 200
    assert await session_rows(store) == 1
    await console_client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert await session_rows(store) == 0
    # replay the old cookie: redirected to sign-in, and told to drop the cookie
    replay = await console_client.get("/admin/users", headers={"Cookie": f"{COOKIE}={old}"}, allow_redirects=False)
    assert replay.status == 302
    assert replay.headers["Location"] == "/login?next=%2Fadmin%2Fusers"
    assert COOKIE in replay.cookies and replay.cookies[COOKIE].value == ""
    api = await console_client.get("/api/v1/me", headers={"Cookie": f"{COOKIE}={old}"})
    assert api.status == 401
    assert (await api.json())["error"]["id"] == "unauthorized"


async def test_idle_and_absolute_expiry(console_app, store):
    clock = Clock()
    auth_state(console_app).clock = clock  # session_hours defaults to 12
    client = await start_client(console_app)
    try:
        await login(client, "op1", PASSWORD)
        clock.advance(hours=11)
        assert (await client.get("/api/v1/me")).status == 200  # used: the idle timer restarts
        clock.advance(hours=11, minutes=59)
        assert (await client.get("/api/v1/me")).status == 200
        clock.advance(hours=12)
        assert (await client.get("/api/v1/me")).status == 401  # 12 h without a request
        assert await session_rows(store) == 0

        await login(client, "op1", PASSWORD)
        for _ in range(15):  # busy all week, never idle
            clock.advance(hours=11)
            assert (await client.get("/api/v1/me")).status == 200
        clock.advance(hours=4)  # 7 days and more after sign-in
        assert (await client.get("/api/v1/me")).status == 401
    finally:
        await client.close()


# --- CSRF and origin --------------------------------------------------------------------------------


async def test_page_posts_need_the_session_csrf_token(console_client, console_app):
    csrf = await login(console_client, "adm1", PASSWORD)
    body = {"username": "op2", "display_name": "", "role": "operator", "operator_interface": "PJSIP/102",
            "password": "Secret-pass-2"}
    missing = await console_client.post("/admin/users", data=body, allow_redirects=False)
    assert missing.status == 403
    assert "Доступ запрещён" in await missing.text()
    wrong = await console_client.post("/admin/users", data={**body, "csrf_token": "x" * 43}, allow_redirects=False)
    assert wrong.status == 403
    assert await auth_state(console_app).accounts.get_user_by_username("op2") is None
    ok = await console_client.post("/admin/users", data={**body, "csrf_token": csrf}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == "/admin/users?done=created"
    # the header works for pages too (fetch)
    header = await console_client.post("/admin/users", data={**body, "username": "op3"},
                                       headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert header.status == 303
    # logout is a POST like any other
    assert (await console_client.post("/logout", allow_redirects=False)).status == 403


async def test_api_posts_with_a_session_need_the_csrf_header(console_client, store):
    await load_demo_data(store.sessions)
    csrf = await login(console_client, "op1", PASSWORD)
    order = {"lines": [{"sku": "WATER-19", "quantity": 2}]}
    missing = await console_client.post("/api/v1/customers/C001/orders", json=order, headers={"Idempotency-Key": "k1"})
    assert missing.status == 403
    assert (await missing.json())["error"]["id"] == "csrf_failed"
    wrong = await console_client.post("/api/v1/customers/C001/orders", json=order,
                                      headers={"Idempotency-Key": "k1", "X-CSRF-Token": "nope"})
    assert wrong.status == 403
    ok = await console_client.post("/api/v1/customers/C001/orders", json=order,
                                   headers={"Idempotency-Key": "k1", "X-CSRF-Token": csrf})
    assert ok.status == 201


async def test_bearer_token_api_posts_need_no_csrf(console_client, store):
    await load_demo_data(store.sessions)
    order = {"lines": [{"sku": "WATER-19", "quantity": 1}]}
    response = await console_client.post("/api/v1/customers/C001/orders", json=order,
                                         headers={**BEARER, "Idempotency-Key": "machine-1"})
    assert response.status == 201
    # a wrong bearer token is refused even with a session
    await login(console_client, "adm1", PASSWORD)
    bad = await console_client.get("/api/v1/calls", headers={"Authorization": "Bearer wrong"})
    assert bad.status == 401


async def test_foreign_origin_is_refused(console_client, store):
    await load_demo_data(store.sessions)
    csrf = await login(console_client, "adm1", PASSWORD)
    evil = {"Origin": "https://evil.example", "X-CSRF-Token": csrf}
    api = await console_client.post("/api/v1/customers/C001/orders", json={"lines": [{"sku": "WATER-19",
                                    "quantity": 1}]}, headers={**evil, "Idempotency-Key": "o1"})
    assert api.status == 403 and (await api.json())["error"]["id"] == "cross_origin"
    page = await console_client.post("/admin/users", data={"csrf_token": csrf, "username": "x1", "role": "operator",
                                                           "password": "Secret-pass-1"}, headers=evil)
    assert page.status == 403
    referer = await console_client.post("/logout", data={"csrf_token": csrf},
                                        headers={"Referer": "http://evil.example/page"}, allow_redirects=False)
    assert referer.status == 403
    null = await console_client.post("/logout", data={"csrf_token": csrf}, headers={"Origin": "null"},
                                     allow_redirects=False)
    assert null.status == 403
    # our own origin is fine
    own = f"http://{console_client.server.host}:{console_client.server.port}"
    same = await console_client.post("/logout", data={"csrf_token": csrf}, headers={"Origin": own},
                                     allow_redirects=False)
    assert same.status == 303


# --- roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("operator", 403), ("supervisor", 403), ("admin", 200)])
async def test_admin_users_page_is_admin_only(console_client, role, status):
    await login(console_client, USERS[role], PASSWORD)
    response = await console_client.get("/admin/users")
    assert response.status == status
    text = await response.text()
    if status == 403:
        assert "Доступ запрещён" in text
    else:
        assert "sup1" in text and "PJSIP/101" in text and "Новый пользователь" in text


async def test_pages_without_a_session_redirect_to_login_with_next(console_client):
    response = await console_client.get("/admin/users?x=1", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=%2Fadmin%2Fusers%3Fx%3D1"
    post = await console_client.post("/admin/users", data={}, allow_redirects=False)
    assert post.status == 302 and post.headers["Location"] == "/login"


@pytest.mark.parametrize(("username", "operator", "status"), [
    ("op1", "101", 200), ("op1", "102", 403), ("sup1", "102", 200), ("adm1", "101", 200),
])
async def test_operator_reads_only_their_own_card(console_client, username, operator, status):
    await login(console_client, username, PASSWORD)
    response = await console_client.get(f"/api/v1/operators/{operator}/current")
    assert response.status == status
    body = await response.json()
    if status == 200:
        assert body["operator"] == operator
    else:
        assert body["error"]["id"] == "forbidden"


async def test_operator_feed_over_a_session(console_client):
    await login(console_client, "op1", PASSWORD)
    async with console_client.ws_connect("/api/v1/operators/101/feed") as ws:
        first = await ws.receive_json(timeout=5)
        assert first == {"operator": "101", "state": "free", "call": None}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await console_client.ws_connect("/api/v1/operators/102/feed")
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
        await console_client.ws_connect("/api/v1/operators/101/feed", origin="https://evil.example")
    assert foreign.value.status == 403


async def test_every_role_reads_calls_customers_and_tasks(console_client, store):
    await load_demo_data(store.sessions)
    for username in USERS.values():
        await login(console_client, username, PASSWORD)
        for path in ("/api/v1/calls", "/api/v1/customers/C001", "/api/v1/tasks"):
            assert (await console_client.get(path)).status == 200, (username, path)
    console_client.session.cookie_jar.clear()
    assert (await console_client.get("/api/v1/calls")).status == 401


async def test_unlisted_api_routes_are_closed_to_sessions_unless_required(console_app):
    async def secret(request):
        return aiohttp.web.json_response({"ok": True})

    @require("supervisor")
    async def supervised(request):
        return aiohttp.web.json_response({"ok": True})

    console_app.router.add_get("/api/v1/secret", secret)
    console_app.router.add_get("/api/v1/supervised", supervised)
    client = await start_client(console_app)
    try:
        assert (await client.get("/api/v1/secret", headers=BEARER)).status == 200
        assert (await client.get("/api/v1/supervised", headers=BEARER)).status == 200
        assert (await client.get("/api/v1/supervised")).status == 401
        await login(client, "adm1", PASSWORD)
        closed = await client.get("/api/v1/secret")
        assert closed.status == 403 and (await closed.json())["error"]["id"] == "forbidden"
        assert (await client.get("/api/v1/supervised")).status == 200
        await login(client, "op1", PASSWORD)
        assert (await client.get("/api/v1/supervised")).status == 403
        assert (await client.get("/api/v1/no-such-route")).status == 404
    finally:
        await client.close()


# --- redirects --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("next_path", "location"), [
    ("/customers/C001?tab=orders", "/customers/C001?tab=orders"),
    ("//evil.example/x", "/operator"),
    ("https://evil.example/", "/operator"),
    ("/\\evil.example", "/operator"),
    ("javascript:alert(1)", "/operator"),
    ("/login", "/operator"),
    ("", "/operator"),
])
async def test_next_is_only_a_same_site_path(console_client, next_path, location):
    response = await login_response(console_client, "op1", PASSWORD, next_path=next_path)
    assert response.status == 303
    assert response.headers["Location"] == location


async def test_login_page_keeps_a_safe_next_only(console_client):
    safe = await (await console_client.get("/login?next=/calls")).text()
    assert 'name="next" value="/calls"' in safe
    evil = await (await console_client.get("/login?next=//evil.example")).text()
    assert 'name="next" value=""' in evil


# --- accounts ---------------------------------------------------------------------------------------


async def test_passwords_are_stored_as_argon2_hashes(console_app, store):
    async with store.sessions() as session:
        hashes = (await session.execute(select(UserRow.password_hash))).scalars().all()
    assert len(hashes) == 3
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert not any(PASSWORD in h for h in hashes)


async def test_login_rehashes_a_hash_with_old_parameters(console_app, store):
    accounts = auth_state(console_app).accounts
    before = (await _hash_of(store, "op1"))
    assert "m=1024,t=1,p=1" in before
    accounts.hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    client = await start_client(console_app)
    try:
        assert (await login_response(client, "op1", PASSWORD)).status == 303
    finally:
        await client.close()
    after = await _hash_of(store, "op1")
    assert after != before and "m=2048,t=2,p=1" in after
    assert accounts.hasher.verify(after, PASSWORD)


async def _hash_of(store, username: str) -> str:
    async with store.sessions() as session:
        return await session.scalar(select(UserRow.password_hash).where(UserRow.username == username))


async def test_deactivated_user_is_signed_out_and_cannot_sign_in(console_app, store):
    operator = await start_client(console_app)
    admin = await start_client(console_app)
    try:
        await login(operator, "op1", PASSWORD)
        csrf = await login(admin, "adm1", PASSWORD)
        op_id = await user_id(console_app, "op1")
        response = await admin.post(f"/admin/users/{op_id}/active", data={"csrf_token": csrf, "active": "0"},
                                    allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/admin/users?done=deactivated"
        assert (await operator.get("/api/v1/me")).status == 401
        operator.session.cookie_jar.clear()
        refused = await login_response(operator, "op1", PASSWORD)
        assert refused.status == 401
        assert session_cookie(operator) is None
        # switched back on, the same password works again
        await admin.post(f"/admin/users/{op_id}/active", data={"csrf_token": csrf, "active": "1"})
        assert (await login_response(operator, "op1", PASSWORD)).status == 303
        # an admin cannot switch themselves off
        own = await admin.post(f"/admin/users/{await user_id(console_app, 'adm1')}/active",
                               data={"csrf_token": csrf, "active": "0"})
        assert own.status == 422
    finally:
        await operator.close()
        await admin.close()


async def test_admin_changes_roles_and_resets_passwords(console_app):
    operator = await start_client(console_app)
    admin = await start_client(console_app)
    try:
        await login(operator, "op1", PASSWORD)
        csrf = await login(admin, "adm1", PASSWORD)
        op_id = await user_id(console_app, "op1")
        assert (await operator.get("/api/v1/operators/102/current")).status == 403
        promoted = await admin.post(f"/admin/users/{op_id}/role", data={"csrf_token": csrf, "role": "supervisor"},
                                    allow_redirects=False)
        assert promoted.status == 303
        assert (await operator.get("/api/v1/operators/102/current")).status == 200  # at once, same session
        bad_role = await admin.post(f"/admin/users/{op_id}/role", data={"csrf_token": csrf, "role": "root"})
        assert bad_role.status == 422 and "Неизвестная роль" in await bad_role.text()

        reset = await admin.post(f"/admin/users/{op_id}/password",
                                 data={"csrf_token": csrf, "password": "New-pass-123"}, allow_redirects=False)
        assert reset.status == 303 and reset.headers["Location"] == "/admin/users?done=password"
        assert (await operator.get("/api/v1/me")).status == 401  # their sessions ended
        operator.session.cookie_jar.clear()
        assert (await login_response(operator, "op1", PASSWORD)).status == 401
        assert (await login_response(operator, "op1", "New-pass-123")).status == 303
        short = await admin.post(f"/admin/users/{op_id}/password", data={"csrf_token": csrf, "password": "short"})
        assert short.status == 422 and "не короче 8" in await short.text()

        profile = await admin.post(f"/admin/users/{op_id}/profile",
                                   data={"csrf_token": csrf, "display_name": "Оля", "operator_interface": "PJSIP/105"},
                                   allow_redirects=False)
        assert profile.status == 303
        account = await auth_state(console_app).accounts.get_user(op_id)
        assert (account.display_name, account.operator_interface) == ("Оля", "PJSIP/105")
        own_role = await admin.post(f"/admin/users/{await user_id(console_app, 'adm1')}/role",
                                    data={"csrf_token": csrf, "role": "operator"})
        assert own_role.status == 422
    finally:
        await operator.close()
        await admin.close()


async def test_admin_creates_users_and_duplicates_are_refused(console_client, console_app):
    csrf = await login(console_client, "adm1", PASSWORD)
    body = {"csrf_token": csrf, "username": "Op2", "display_name": "Пётр", "role": "operator",
            "operator_interface": "PJSIP/102", "password": "Secret-pass-2"}
    created = await console_client.post("/admin/users", data=body)
    assert created.status == 200 and "Пользователь создан" in await created.text()
    account = await auth_state(console_app).accounts.get_user_by_username("op2")
    assert account.role == "operator" and account.operator_interface == "PJSIP/102"
    duplicate = await console_client.post("/admin/users", data={**body, "username": "OP2"})
    assert duplicate.status == 422
    text = await duplicate.text()
    assert "уже есть" in text and 'value="OP2"' in text
    bad_interface = await console_client.post("/admin/users", data={**body, "username": "op9",
                                                                     "operator_interface": "101 x"})
    assert bad_interface.status == 422 and "PJSIP/101" in await bad_interface.text()
    new_client = await start_client(console_app)
    try:
        await login(new_client, "op2", "Secret-pass-2")
        assert (await new_client.get("/api/v1/operators/102/current")).status == 200
    finally:
        await new_client.close()


async def test_templates_escape_user_data(console_client, console_app):
    await auth_state(console_app).accounts.create_user("x1", PASSWORD, "operator", "<script>alert(1)</script>")
    await login(console_client, "adm1", PASSWORD)
    text = await (await console_client.get("/admin/users")).text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text


async def test_pages_are_not_cached_or_framed(console_client):
    await login(console_client, "adm1", PASSWORD)
    response = await console_client.get("/admin/users")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
