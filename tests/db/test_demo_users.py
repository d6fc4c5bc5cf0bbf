"""Demo console accounts exist only in an empty user table and can sign in."""

from __future__ import annotations

from crm_bridge.accounts import AccountStore
from crm_bridge.demo import DEMO_PASSWORD, create_demo_users


async def test_demo_users_are_created_once_and_work(store):
    assert await create_demo_users(store.sessions) == ["admin", "supervisor", "operator"]
    assert await create_demo_users(store.sessions) == []  # never a second set
    accounts = AccountStore(store.sessions)
    roles = {a.username: (a.role, a.operator_interface) for a in await accounts.list_users()}
    assert roles == {"admin": ("admin", None), "supervisor": ("supervisor", None),
                     "operator": ("operator", "PJSIP/101")}
    assert await accounts.authenticate("operator", DEMO_PASSWORD) is not None


async def test_no_demo_users_next_to_real_ones(store):
    accounts = AccountStore(store.sessions)
    await accounts.create_user("olga", "a-real-secret", "admin")
    assert await create_demo_users(store.sessions) == []
    assert [a.username for a in await accounts.list_users()] == ["olga"]
