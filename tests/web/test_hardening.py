"""Issue 10, point 10 over real HTTP: a Content-Security-Policy on every page, an access log without
the bearer token or customers' search terms, and the client address behind a trusted proxy."""

from __future__ import annotations

import logging

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from ivr.web.client_address import TRUSTED_PROXIES_KEY, client_address, parse_networks
from ivr.web.hardening import CONTENT_SECURITY_POLICY, RedactingAccessLogger
from tests.console.conftest import API_TOKEN, PASSWORD, add_role_users, login, make_console_app

PAGES = ["/login", "/operator", "/calls", "/customers", "/customers?q=Иванов", "/stats", "/wallboard",
         "/admin/users", "/calls/no-such-call"]


async def start_logged(app: web.Application, **client_args) -> TestClient:
    """A test client on a server whose runner has the service's access logger (as ivr.app wires it)."""
    server = TestServer(app)
    await server.start_server(access_log_class=RedactingAccessLogger)
    client = TestClient(server, **client_args)
    await client.start_server()
    return client


@pytest.fixture
async def logged_client(store):
    """The console with the service's access logger (as ivr.app wires it)."""
    app = make_console_app(store)
    await add_role_users(app)
    client = await start_logged(app, cookie_jar=CookieJar(unsafe=True))
    yield client
    await client.close()


async def test_every_page_has_the_content_security_policy(logged_client):
    assert (await logged_client.get("/login")).headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    await login(logged_client, "adm1", PASSWORD)
    for path in PAGES:
        response = await logged_client.get(path)
        assert response.content_type == "text/html", path
        policy = response.headers.get("Content-Security-Policy")
        assert policy == CONTENT_SECURITY_POLICY, path
    # refusals are pages too (the session middleware's 403, before any handler)
    await login(logged_client, "op1", PASSWORD)
    forbidden = await logged_client.get("/admin/users")
    assert forbidden.status == 403 and forbidden.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_policy_allows_no_inline_code_and_no_framing():
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"


async def test_templates_carry_no_inline_script_or_style(logged_client):
    """What the policy would block must not be on our own pages: only <script src> and JSON data."""
    import re

    await login(logged_client, "adm1", PASSWORD)
    for path in [*PAGES, "/operator?operator=101"]:
        html = await (await logged_client.get(path)).text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html), path


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]


async def test_access_log_keeps_neither_the_token_nor_search_terms(logged_client, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await login(logged_client, "sup1", PASSWORD)
    await logged_client.get("/customers", params={"q": "Иванова Мария +79161234567"})
    await logged_client.get("/calls", params={"caller": "+79161234567", "customer": "Петров", "page": "2",
                                              "from": "2026-11-01"})
    await logged_client.get("/api/v1/operators/101/feed", params={"token": API_TOKEN + "-secret-part"})
    await logged_client.get("/api/v1/calls", headers={"Authorization": f"Bearer {API_TOKEN}"})
    lines = access_lines(caplog)
    text = "\n".join(lines)
    for secret in ("Иванова", "%D0%98", "79161234567", "Петров", "secret-part", "Bearer", PASSWORD):
        assert secret not in text, secret
    assert any('"GET /customers?q=… HTTP/1.1" 200' in line for line in lines), text
    assert any("/calls?caller=…&customer=…&page=2&from=2026-11-01 " in line for line in lines), text
    assert any("/api/v1/operators/101/feed?token=… " in line for line in lines), text
    assert any(line.startswith("127.0.0.1 ") for line in lines)


async def test_access_log_and_sign_in_see_the_client_behind_a_trusted_proxy(store, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    app = make_console_app(store)
    app[TRUSTED_PROXIES_KEY] = parse_networks(["127.0.0.0/8"])
    client = await start_logged(app)
    try:
        await client.get("/login", headers={"X-Forwarded-For": "198.51.100.23"})
    finally:
        await client.close()
    assert any(line.startswith("198.51.100.23 \"GET /login ") for line in access_lines(caplog))


# --- client_address -------------------------------------------------------------------------------


async def _seen(trusted: list[str], headers: dict[str, str]) -> str:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(client_address(request))
        return web.Response()

    app = web.Application()
    app[TRUSTED_PROXIES_KEY] = parse_networks(trusted)
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        await client.get("/", headers=headers)
    return seen[0]


@pytest.mark.parametrize(("trusted", "forwarded", "client"), [
    ([], "198.51.100.1", "127.0.0.1"),  # no trusted proxy: the header is anyone's to forge
    (["10.0.0.0/8"], "198.51.100.1", "127.0.0.1"),  # the peer is not a trusted proxy
    (["127.0.0.1"], "198.51.100.1", "198.51.100.1"),
    (["127.0.0.1"], "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the forged left part is not believed
    (["127.0.0.1", "10.0.0.0/8"], "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # two proxies
    (["127.0.0.1", "10.0.0.0/8"], "10.1.2.3", "10.1.2.3"),  # only proxies: the leftmost
    (["127.0.0.1"], "garbage", "127.0.0.1"),
    (["127.0.0.1"], "[2001:db8::1]:443", "2001:db8::1"),
    (["127.0.0.1"], "", "127.0.0.1"),
])
async def test_client_address(trusted, forwarded, client):
    assert await _seen(trusted, {"X-Forwarded-For": forwarded} if forwarded else {}) == client


def test_a_bad_trusted_proxy_names_the_setting():
    with pytest.raises(ValueError, match=r"web.trusted_proxies: 'office' is not an IP address or network"):
        parse_networks(["10.0.0.0/8", "office"])
