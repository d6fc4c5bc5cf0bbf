"""crm_bridge.accounts on both backends: users, sessions, expiry purge; DTOs only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.accounts import Account, AccountStore, DuplicateUsername, InvalidAccount, SessionRecord
from tests.console.conftest import FAST_HASHER

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def accounts(store) -> AccountStore:
    return AccountStore(store.sessions, FAST_HASHER)


async def test_users_round_trip_as_dtos(accounts):
    created = await accounts.create_user("Anna.P", "Pa55word!", "operator", " Анна ", " PJSIP/101 ")
    assert isinstance(created, Account)
    assert (created.username, created.display_name, created.operator_interface, created.active) == (
        "anna.p", "Анна", "PJSIP/101", True)
    assert await accounts.get_user(created.id) == created
    assert await accounts.get_user_by_username("ANNA.P") == created
    assert await accounts.get_user(9999) is None
    assert not hasattr(created, "password_hash")
    await accounts.create_user("boris", "Pa55word!", "admin")
    assert [u.username for u in await accounts.list_users()] == ["anna.p", "boris"]
    updated = await accounts.update_user(created.id, role="supervisor", operator_interface=None)
    assert (updated.role, updated.operator_interface) == ("supervisor", None)
    assert await accounts.update_user(9999, role="admin") is None


@pytest.mark.parametrize(("username", "password", "role", "interface"), [
    ("", "Pa55word!", "operator", None),
    ("a b", "Pa55word!", "operator", None),
    ("x" * 65, "Pa55word!", "operator", None),
    ("ok", "short", "operator", None),
    ("ok", "Pa55word!", "root", None),
    ("ok", "Pa55word!", "operator", "101"),
])
async def test_invalid_accounts_are_refused(accounts, username, password, role, interface):
    with pytest.raises(InvalidAccount):
        await accounts.create_user(username, password, role, "", interface)
    assert await accounts.list_users() == []


async def test_usernames_are_unique_without_case_even_when_racing(accounts):
    await accounts.create_user("anna", "Pa55word!", "operator")
    with pytest.raises(DuplicateUsername):
        await accounts.create_user("ANNA", "Pa55word!", "operator")
    results = await asyncio.gather(*(accounts.create_user(name, "Pa55word!", "operator")
                                     for name in ("Vera", "vera", "VERA")), return_exceptions=True)
    assert sum(isinstance(r, Account) for r in results) == 1
    assert sum(isinstance(r, DuplicateUsername) for r in results) == 2


async def test_authenticate(accounts):
    user = await accounts.create_user("anna", "Pa55word!", "operator")
    assert (await accounts.authenticate("Anna", "Pa55word!")).id == user.id
    assert await accounts.authenticate("anna", "wrong-pass") is None
    assert await accounts.authenticate("nobody", "Pa55word!") is None
    assert await accounts.authenticate("anna", "x" * 5000) is None
    await accounts.update_user(user.id, active=False)
    assert await accounts.authenticate("anna", "Pa55word!") is None


async def test_sessions(accounts):
    anna = await accounts.create_user("anna", "Pa55word!", "operator")
    boris = await accounts.create_user("boris", "Pa55word!", "operator")
    record = await accounts.create_session(anna.id, token_hash="a" * 64, csrf_token="c1", now=NOW,
                                           expires_at=NOW + timedelta(days=7), ip="10.0.0.1", user_agent="UA")
    assert isinstance(record, SessionRecord) and record.last_seen_at == NOW
    await accounts.create_session(anna.id, token_hash="b" * 64, csrf_token="c2", now=NOW,
                                  expires_at=NOW + timedelta(days=7))
    await accounts.create_session(boris.id, token_hash="c" * 64, csrf_token="c3", now=NOW,
                                  expires_at=NOW + timedelta(days=7))
    user, found = await accounts.session_user("a" * 64)
    assert user == anna and found == record
    assert await accounts.session_user("f" * 64) is None

    await accounts.touch_session("a" * 64, NOW + timedelta(hours=1))
    assert (await accounts.session_user("a" * 64))[1].last_seen_at == NOW + timedelta(hours=1)

    assert await accounts.delete_session("b" * 64) is True
    assert await accounts.delete_session("b" * 64) is False
    # sessions of a deactivated user are gone, not merely hidden
    await accounts.update_user(boris.id, active=False)
    await accounts.update_user(boris.id, active=True)
    assert await accounts.session_user("c" * 64) is None
    assert await accounts.delete_user_sessions(anna.id) == 1
    assert await accounts.session_user("a" * 64) is None


async def test_purge_removes_idle_and_expired_sessions(accounts):
    anna = await accounts.create_user("anna", "Pa55word!", "operator")
    for token, seen, expires in (("1", NOW, NOW + timedelta(days=7)),  # fresh
                                 ("2", NOW - timedelta(hours=13), NOW + timedelta(days=6)),  # idle
                                 ("3", NOW, NOW - timedelta(seconds=1))):  # past the absolute expiry
        await accounts.create_session(anna.id, token_hash=token * 64, csrf_token="c", now=seen, expires_at=expires)
    assert await accounts.purge_sessions(now=NOW, idle=timedelta(hours=12)) == 2
    assert await accounts.session_user("1" * 64) is not None


async def test_password_reset_ends_sessions(accounts):
    anna = await accounts.create_user("anna", "Pa55word!", "operator")
    await accounts.create_session(anna.id, token_hash="a" * 64, csrf_token="c", now=NOW,
                                  expires_at=NOW + timedelta(days=7))
    assert await accounts.set_password(anna.id, "Another-pass-1") is True
    assert await accounts.session_user("a" * 64) is None
    assert await accounts.authenticate("anna", "Another-pass-1") is not None
    assert await accounts.set_password(9999, "Another-pass-1") is False
