"""End-to-end browser tests of the console: the real service (``ivr.app.start_service``: FastAGI, web
console, AMI client + call tracker) on a SQLite file with the demo data, a fake Asterisk on both
of its sides (tests/fakeasterisk.py for FastAGI calls, tests/fakeami.py for the Manager
Interface), and a real headless Chromium driven by Playwright's async API in the same event loop.

Chromium is Debian's ``/usr/bin/chromium`` (``make test`` / ``.ci/run`` install it); Playwright's own
browser downloads are never used. Without that binary the tests are skipped with the reason.

Screenshots (one per scenario) go to ``$IVR_E2E_SCREENSHOTS`` when set, else to a temporary
directory; they are never committed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.accounts import AccountStore
from crm_bridge.demo import load_demo_data
from ivr.app import Service, start_service
from ivr.settings import default_settings
from ivr.web.console.auth import auth_state
from tests.console.conftest import FAST_HASHER, PASSWORD
from tests.fakeami import FakeAmi
from tests.fakeasterisk import FakeAsterisk
from tests.traces import TRACES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
API_TOKEN = "e2e-token"
OPERATOR_INTERFACE = "Local/101@operator-agent/n"  # the queue member in the AMI traces; key "101"
OPERATOR_NAME = "Ольга Операторова"
AMI_TRACES = TRACES / "ami"
REAL_WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"
# The home page of each role and the navigation it must show, in order.
HOMES = {"op1": "/operator", "sup1": "/calls", "adm1": "/calls"}
NAV = {
    "op1": ["Оператор", "Звонки", "Клиенты", "Сделки"],
    "sup1": ["Оператор", "Звонки", "Клиенты", "Сделки", "Статистика", "Табло"],
    "adm1": ["Оператор", "Звонки", "Клиенты", "Сделки", "Статистика", "Табло", "Пользователи", "CRM"],
}
PAGE_TIMEOUT_MS = 10_000  # fail in seconds, not after Playwright's default 30 s

e2e = pytest.mark.e2e
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end browser test (headless Chromium via Playwright)")


# --- the service ----------------------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` (sync or async) until it is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        await asyncio.sleep(0.03)


@dataclass
class Console:
    """The running service and the fakes around it."""

    service: Service
    fake_ami: FakeAmi
    base_url: str
    recordings_dir: Path
    shots: Path
    calls_made: list[FakeAsterisk] = field(default_factory=list)

    @property
    def store(self):
        return self.service.store

    def url(self, path: str) -> str:
        return self.base_url + path

    async def call(self, caller_id: str, inputs: list[str], *, uniqueid: str | None = None) -> FakeAsterisk:
        """One FastAGI call as Asterisk places it; returns when the server has closed the socket."""
        fake = FakeAsterisk(inputs=inputs)
        self.calls_made.append(fake)
        await fake.connect("127.0.0.1", self.service.agi.port, caller_id=caller_id, uniqueid=uniqueid)
        assert await fake.wait_closed(30.0), "the server must end the call and close the socket"
        return fake

    async def call_row(self, call_id: str, outcome: str | None = None, timeout: float = 10.0):
        async def check():
            row = await self.store.get_call(call_id)
            if row is None or not row.outcome:
                return None
            return row if outcome is None or row.outcome == outcome else None

        return await wait_for(check, timeout, f"call {call_id} with outcome {outcome}")

    async def operator_orders(self, customer_id: str) -> list:
        card = await self.store.get_customer_card(customer_id)
        assert card is not None
        return [o for o in card.orders if o.source == "operator"]


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by every e2e test: each prompt is synthesized once per run."""
    return tmp_path_factory.mktemp("e2e-prompts")


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("IVR_E2E_SCREENSHOTS")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("e2e-screenshots")


@pytest.fixture
def console_overrides() -> dict[str, dict[str, Any]]:
    """Settings sections a test module changes for its service (override this fixture in the module)."""
    return {}


@pytest.fixture
async def console(tmp_path: Path, prompts_dir: Path, shots_dir: Path,
                  console_overrides: dict[str, dict[str, Any]]) -> AsyncIterator[Console]:
    fake_ami = await FakeAmi().start()
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    database = f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3"
    settings = default_settings().replace(
        agi={"port": 0, "drain_seconds": 2.0},
        web={"port": 0, "api_token": API_TOKEN, "cookie_secure": False},
        database={"url": database},
        prompts={"dir": str(prompts_dir), "warm_at_start": False},
        recordings={"dir": str(recordings)},
        # operators on duty around the clock: the scenarios must not depend on when they run
        hours={"open": "00:00", "close": "23:59:59.999999", "days": [1, 2, 3, 4, 5, 6, 7]},
        ami={"port": fake_ami.port, "username": "ivr", "secret": "ivrsecret", "reconnect_min": 0.05,
             "reconnect_max": 0.2, "action_timeout": 2.0},
        operators={"names": {OPERATOR_INTERFACE: OPERATOR_NAME}},
        # max_silence: a loaded machine's first syntheses must not send the caller to an operator
        flow={"menu_timeout": 2.0, "quantity_timeout": 2.0, "max_silence": 10.0},
    ).replace(**console_overrides)
    service = await start_service(settings)
    try:
        assert service.web_app is not None and service.web_port
        await load_demo_data(service.store.sessions)
        accounts = AccountStore(service.store.sessions, FAST_HASHER)
        await accounts.create_user("op1", PASSWORD, "operator", OPERATOR_NAME, OPERATOR_INTERFACE)
        await accounts.create_user("sup1", PASSWORD, "supervisor", "Сергей Старший")
        await accounts.create_user("adm1", PASSWORD, "admin", "Анна Админова")
        # the same cheap argon2 parameters on the server side: no rehash (and no 64 MiB hash) per sign-in
        auth_state(service.web_app).accounts.hasher = FAST_HASHER
        # AMI logged in and its first snapshot (CoreShowChannels + QueueStatus) answered: events pushed
        # from now on come after the resync, as in real life
        await fake_ami.wait_for_logins(1)
        await wait_for(lambda: service.health()["ami"]["status"] == "connected", what="AMI connected")
        await wait_for(lambda: "QueueStatus" in fake_ami.action_names(), what="AMI resync")
        await asyncio.sleep(0.1)
        yield Console(service=service, fake_ami=fake_ami, base_url=f"http://127.0.0.1:{service.web_port}",
                      recordings_dir=recordings, shots=shots_dir)
    finally:
        await service.stop()
        await fake_ami.stop()


# --- the browser ----------------------------------------------------------------------------------------


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """Debian's Chromium, headless. Every ``browser.new_context()`` is a separate cookie jar; the profile
    (user-data dir) is a fresh temporary directory that Playwright creates for this launch and removes."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            downloads_path=str(tmp_path / "downloads"),
        )
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(browser, console: Console):
    """A page in a fresh context (own cookies), with short timeouts and JS errors collected."""
    context = await browser.new_context(base_url=console.base_url, locale="ru-RU", timezone_id="Europe/Moscow",
                                        viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


async def sign_in(page, username: str, password: str = PASSWORD) -> None:
    """Through the real sign-in form, as a person does; returns on the role's home page."""
    await page.goto("/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    path = re.sub(r"^https?://[^/]+", "", page.url)
    assert path == HOMES[username], f"{username} landed on {path}"


async def nav_links(page) -> list[str]:
    return [text.strip() for text in await page.locator("header nav a").all_inner_texts()]


async def screenshot(page, console: Console, name: str) -> Path:
    path = console.shots / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def copy_recording(console: Console, name: str) -> Path:
    target = console.recordings_dir / name
    shutil.copyfile(REAL_WAV, target)
    return target
