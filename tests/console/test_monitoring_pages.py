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


# --- wallboard.js, run by node against a minimal fake DOM (no browser needed) ------------------------------

DOM_HARNESS = r"""
const fs = require("fs");
const [script, payloadFile, status] = process.argv.slice(2);
const payload = fs.readFileSync(payloadFile, "utf8");
const elements = {};
function element(id) {
  const el = { id, textContent: "", hidden: false, children: [], className: "", colSpan: 1, href: "",
    dataset: {}, appendChild(child) { this.children.push(child); return child; },
    replaceChildren() { this.children = []; } };
  if (id) elements[id] = el;
  return el;
}
for (const id of ["wb-updated", "wb-ami", "wb-error", "wb-ivr", "wb-queue", "wb-longest", "wb-busy", "wb-free",
                  "wb-orders-ivr", "wb-orders-operator", "wb-orders-total", "wb-queue-rows", "wb-operator-rows"]) {
  element(id);
}
elements["wb-error"].hidden = true;
const root = element("wallboard");
root.dataset = { url: "/api/v1/wallboard", poll: "2" };
const timers = [];
global.document = { getElementById: (id) => elements[id] || null, createElement: () => element(null) };
global.location = { href: "/wallboard" };
global.setTimeout = (fn, ms) => { timers.push([fn, ms]); };
const requested = [];
global.fetch = async (url, options) => {
  requested.push([url, options.credentials]);
  return { ok: Number(status) === 200, status: Number(status), statusText: "x", json: async () => JSON.parse(payload) };
};
require(script);
(async () => {
  const [first] = timers.splice(0);
  await first[0]();
  const text = (el) => el.children.map((row) => row.children.map((td) =>
    td.textContent || (td.children[0] && td.children[0].textContent) || ""));
  const out = { requested, delay: first[1], rescheduled: timers.length, location: global.location.href };
  for (const [id, el] of Object.entries(elements)) out[id] = { text: el.textContent, hidden: el.hidden };
  out.queueRows = text(elements["wb-queue-rows"]);
  out.operatorRows = text(elements["wb-operator-rows"]);
  console.log(JSON.stringify(out));
})();
"""


def _run_wallboard_js(tmp_path, payload: dict, status: int = 200) -> dict:
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = Path(__file__).resolve().parents[2] / "ivr" / "web" / "console" / "static" / "wallboard.js"
    (tmp_path / "payload.json").write_text(json.dumps(payload, ensure_ascii=False))
    (tmp_path / "dom.js").write_text(DOM_HARNESS)
    done = subprocess.run([node, str(tmp_path / "dom.js"), str(script), str(tmp_path / "payload.json"), str(status)],
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


async def test_wallboard_js_redraws_from_the_json(store, tmp_path):
    from ivr.web.console.monitoring import wallboard_data
    from tests.console.test_monitoring import NOW, deps_for

    data = await wallboard_data(deps_for(store, tracker=fake_tracker(), health=health()), now=NOW)
    out = _run_wallboard_js(tmp_path, data)
    assert out["requested"] == [["/api/v1/wallboard", "same-origin"]]
    assert out["delay"] == 2000 and out["rescheduled"] == 1  # polls again
    assert out["wb-ami"]["hidden"] is True and out["wb-error"]["hidden"] is True
    assert out["wb-updated"]["text"] == "12:00:00"  # the server's Moscow clock, not the browser's nor UTC
    assert (out["wb-ivr"]["text"], out["wb-queue"]["text"], out["wb-longest"]["text"]) == ("1", "2", "1:35")
    assert (out["wb-busy"]["text"], out["wb-free"]["text"]) == ("2", "1")
    assert out["wb-orders-total"]["text"] == "0"
    assert out["queueRows"] == [["+79031112233", "—", "1:35"], ["+79161234567", "C001", "0:30"]]
    assert out["operatorRows"][0] == ["Анна", "PJSIP/101", "разговаривает", "1:00"]

    offline = await wallboard_data(deps_for(store, tracker=None, health=None), now=NOW)
    out = _run_wallboard_js(tmp_path, offline)
    assert out["wb-ami"]["hidden"] is False and out["wb-ami"]["text"].startswith(AMI_DOWN_TEXT)
    assert out["wb-ami"]["text"].endswith("(выключен в настройках)")
    assert out["wb-queue"]["text"] == "—" and out["wb-orders-ivr"]["text"] == "0"
    assert out["queueRows"] == [["Никто не ждёт."]]

    out = _run_wallboard_js(tmp_path, data, status=500)
    assert out["wb-error"]["hidden"] is False and out["rescheduled"] == 1  # keeps trying
    out = _run_wallboard_js(tmp_path, data, status=401)
    assert out["location"] == "/login?next=/wallboard"
