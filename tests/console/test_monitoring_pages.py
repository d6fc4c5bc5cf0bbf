"""The wallboard with console sessions, both backends: supervisors/admins see the page and poll the
JSON with their session; operators get 403; without AMI the page says so and still counts orders."""

from __future__ import annotations

import pytest

from ivr.web.console.deps import DEPS_KEY
from ivr.web.console.monitoring import AMI_DOWN_TEXT
from tests.console.conftest import PASSWORD, login, start_client
from tests.console.test_monitoring import fake_tracker, health


@pytest.fixture
async def client(console_app):
    client = await start_client(console_app)
    yield client
    await client.close()


async def test_anonymous_is_sent_to_sign_in_or_refused(client):
    resp = await client.get("/wallboard", allow_redirects=False)
    assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login")
    assert (await client.get("/api/v1/wallboard")).status == 401


async def test_operator_is_refused(client):
    await login(client, "op1", PASSWORD)
    assert (await client.get("/wallboard")).status == 403
    assert (await client.get("/api/v1/wallboard")).status == 403


@pytest.mark.parametrize("user", ["sup1", "adm1"])
async def test_supervisor_page_and_session_json(client, console_app, user):
    deps = console_app[DEPS_KEY]
    deps.tracker = fake_tracker()
    deps.health = health()
    await login(client, user, PASSWORD)
    resp = await client.get("/wallboard")
    assert resp.status == 200
    page = await resp.text()
    assert '<script src="/static/wallboard.js"' in page and 'data-url="/api/v1/wallboard"' in page
    assert "Анна" in page and "Борис" in page and "+79031112233" in page
    assert 'id="wb-ami" hidden' in page
    resp = await client.get("/api/v1/wallboard")  # the page's own poll: session cookie, no token
    assert resp.status == 200
    data = await resp.json()
    assert data["ami"]["live"] is True and data["queue"]["count"] == 2 and data["poll_seconds"] == 2
    script = await client.get("/static/wallboard.js")
    assert script.status == 200 and "setTimeout(poll" in await script.text()


async def test_without_ami(client, console_app):
    deps = console_app[DEPS_KEY]
    deps.tracker = None
    deps.health = None
    await login(client, "sup1", PASSWORD)
    page = await (await client.get("/wallboard")).text()
    assert AMI_DOWN_TEXT in page and 'id="wb-ami" hidden' not in page
    data = await (await client.get("/api/v1/wallboard")).json()
    assert data["ami"]["message"] == AMI_DOWN_TEXT
    assert data["orders_today"] == {"day": data["orders_today"]["day"], "ivr": 0, "operator": 0, "other": 0,
                                    "total": 0, "ivr_amount": "0.00", "operator_amount": "0.00"}


async def test_healthz_and_metrics_need_no_session(client, console_app):
    from ivr.web.console.metrics import Metrics

    console_app[DEPS_KEY].health = health()
    console_app[DEPS_KEY].metrics = Metrics()
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200  # the test client is on 127.0.0.1
