"""The sign-in throttle: growing delays per account and per address, and one person's typos never
locking out the rest of the office (issue 10, point 5). The pure rules first, then over real HTTP."""

from __future__ import annotations

import pytest
import structlog

from ivr.web.client_address import TRUSTED_PROXIES_KEY, parse_networks
from ivr.web.console.auth import auth_state
from ivr.web.console.login_throttle import LoginThrottle, Refusal
from tests.console.conftest import PASSWORD, Clock, add_role_users, login_response, make_console_app, start_client

OFFICE = "203.0.113.7"  # one NAT address for the whole office


def fail(throttle: LoginThrottle, account: str, now: float, address: str = OFFICE) -> Refusal | None:
    assert throttle.before(account, address, now) is None, "the attempt must be checked"
    return throttle.after_failure(account, address, now)


# --- the rules, on a clock of plain seconds ---------------------------------------------------------


def test_three_failures_are_free_then_the_delay_doubles_up_to_the_cap():
    throttle = LoginThrottle(account_free=3, first_delay=1.0, max_delay=8.0)
    now = 1000.0
    for _ in range(3):
        fail(throttle, "anna", now)
    assert throttle.next_wait("anna", now) == 1.0
    waits = []
    for _ in range(5):
        refusal = throttle.before("anna", OFFICE, now)
        assert refusal is not None and refusal.scope == "account"
        waits.append(refusal.wait)
        now += refusal.wait  # exactly when allowed: checked again
        fail(throttle, "anna", now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize(("elapsed", "refused"), [(0.0, True), (0.99, True), (1.0, False), (5.0, False)])
def test_an_account_waits_from_its_last_failure(elapsed, refused):
    throttle = LoginThrottle(account_free=3)
    for second in range(3):
        fail(throttle, "anna", 100.0 + second)
    assert (throttle.before("anna", OFFICE, 102.0 + elapsed) is not None) is refused


def test_refused_attempts_do_not_lengthen_the_wait():
    throttle = LoginThrottle(account_free=3)
    for _ in range(3):
        fail(throttle, "anna", 100.0)
    for tick in range(10):  # someone pressing the button again and again
        assert throttle.before("anna", OFFICE, 100.0 + tick / 20) is not None
    assert throttle.before("anna", OFFICE, 101.0) is None


def test_success_clears_the_account_and_a_quiet_hour_forgets_it():
    throttle = LoginThrottle(account_free=3, forget_after=3600.0)
    for _ in range(2):
        fail(throttle, "anna", 100.0)
    throttle.succeeded("anna")
    for _ in range(2):
        fail(throttle, "anna", 101.0)
    assert throttle.next_wait("anna", 101.0) == 0  # two, not four: the success reset the count
    fail(throttle, "anna", 102.0)
    assert throttle.next_wait("anna", 102.0) == 1.0
    assert throttle.accounts.failures("anna", 102.0 + 3600.0) == 0


def test_one_account_failing_never_delays_another_on_the_same_address():
    throttle = LoginThrottle(account_free=3, address_free=30)
    now = 0.0
    for _ in range(40):  # Anna forgot her password and keeps trying, as fast as she is let
        while (refusal := throttle.before("anna", OFFICE, now)) is not None:
            now += refusal.wait
        fail(throttle, "anna", now)
    assert throttle.addresses.wait(OFFICE, now) > 0  # the office address is over its allowance…
    assert throttle.before("boris", OFFICE, now) is None  # …and Boris is still checked


def test_an_address_over_its_allowance_still_checks_clean_accounts():
    """Password spraying from one address: one guess per account, then the address's delay; an
    account without a failure on record is always checked (a correct password gets in)."""
    throttle = LoginThrottle(account_free=3, address_free=5)
    for n in range(5):
        assert fail(throttle, f"user{n}", 10.0) is None  # within the allowance: plain 401s
    # the sixth failure from the address: its password was checked, the answer is a 429 now
    refusal = fail(throttle, "user5", 10.0)
    assert refusal == Refusal("address", 2.0)
    # an account that has failed already is not even checked while the address waits
    assert throttle.before("user0", OFFICE, 10.5) == Refusal("address", 1.5)
    # a clean account from the same address is checked; elsewhere nothing waits
    assert throttle.before("boris", OFFICE, 10.5) is None
    assert throttle.before("user0", "198.51.100.1", 10.5) is None
    assert throttle.before("user0", OFFICE, 12.0) is None


def test_counters_are_bounded():
    throttle = LoginThrottle(max_keys=100)
    for n in range(1000):
        throttle.after_failure(f"user{n}", f"10.0.{n // 256}.{n % 256}", 1.0)
    assert len(throttle.accounts._keys) == 100 and len(throttle.addresses._keys) == 100


@pytest.mark.parametrize(("wait", "header"), [(0.2, 1), (1.0, 1), (1.01, 2), (899.5, 900)])
def test_retry_after_is_whole_seconds_never_zero(wait, header):
    assert Refusal("account", wait).retry_after == header


# --- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
async def office(store):
    """The console behind a trusted reverse proxy (the test client's 127.0.0.1), a settable clock."""
    app = make_console_app(store)
    app[TRUSTED_PROXIES_KEY] = parse_networks(["127.0.0.1"])
    await add_role_users(app)
    clock = Clock()
    auth_state(app).clock = clock
    client = await start_client(app)
    yield client, clock
    await client.close()


def from_(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_office_lockout_one_wrong_password_never_locks_out_the_others(office):
    client, clock = office
    for _ in range(3):
        wrong = await login_response(client, "op1", "bad-password", headers=from_(OFFICE))
        assert wrong.status == 401
    assert "Следующая попытка — через 1 сек." in await wrong.text()
    with structlog.testing.capture_logs() as logs:
        refused = await login_response(client, "op1", PASSWORD, headers=from_(OFFICE))  # even the right one
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    text = await refused.text()
    assert "Слишком много неверных паролей для этого имени. Повторите вход через 1 сек." in text
    assert PASSWORD not in text
    (line,) = [e for e in logs if e["event"] == "login_throttled"]
    assert line["log_level"] == "warning" and line["scope"] == "account"
    assert line["ip"] == OFFICE and line["username"] == "op1" and line["retry_after"] == 1
    assert PASSWORD not in repr(logs) and "bad-password" not in repr(logs)

    # colleagues on the same office address sign in at once
    client.session.cookie_jar.clear()
    assert (await login_response(client, "sup1", PASSWORD, headers=from_(OFFICE))).status == 303
    client.session.cookie_jar.clear()
    assert (await login_response(client, "adm1", PASSWORD, headers=from_(OFFICE))).status == 303

    client.session.cookie_jar.clear()
    clock.advance(seconds=1)
    assert (await login_response(client, "op1", PASSWORD, headers=from_(OFFICE))).status == 303


async def test_the_delay_grows_with_every_further_failure(office):
    client, clock = office
    for _ in range(3):
        assert (await login_response(client, "op1", "bad", headers=from_(OFFICE))).status == 401
    waits = []
    for _ in range(4):
        refused = await login_response(client, "op1", "bad", headers=from_(OFFICE))
        assert refused.status == 429
        waits.append(int(refused.headers["Retry-After"]))
        clock.advance(seconds=waits[-1])
        assert (await login_response(client, "op1", "bad", headers=from_(OFFICE))).status == 401
    assert waits == [1, 2, 4, 8]
    refused = await login_response(client, "op1", PASSWORD, headers=from_(OFFICE))
    assert "через 16 сек." in await refused.text()


async def test_address_allowance_spraying_waits_a_clean_account_gets_in(office, store):
    client, clock = office
    throttle = auth_state(client.app).throttle
    throttle.addresses.free = 4
    for name in ("u1", "u2", "u3", "u4"):
        assert (await login_response(client, name, "Winter2026!", headers=from_("198.51.100.9"))).status == 401
    sprayed = await login_response(client, "u5", "Winter2026!", headers=from_("198.51.100.9"))
    assert sprayed.status == 429
    assert "с этого адреса" in await sprayed.text()
    assert (await login_response(client, "u1", "Spring2026!", headers=from_("198.51.100.9"))).status == 429
    # op1 has no failure on record: checked, and the right password gets in from that address too
    assert (await login_response(client, "op1", PASSWORD, headers=from_("198.51.100.9"))).status == 303


async def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(console_app):
    """Else anyone could pick a fresh address per attempt: the peer (127.0.0.1) is the address."""
    clock = Clock()
    auth_state(console_app).clock = clock
    auth_state(console_app).throttle.addresses.free = 3
    client = await start_client(console_app)
    try:
        for n in range(3):
            assert (await login_response(client, f"x{n}", "bad", headers=from_(f"10.9.9.{n}"))).status == 401
        refused = await login_response(client, "x9", "bad", headers=from_("10.9.9.99"))
        assert refused.status == 429 and "с этого адреса" in await refused.text()
    finally:
        await client.close()
