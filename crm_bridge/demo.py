"""A small, realistic demo data set (bottled-water delivery) loaded through the real importers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crm_bridge.accounts import AccountStore
from crm_bridge.importers import ImportReport, import_file

DEMO_DIR = Path(__file__).resolve().parent / "demo"
# Order matters: orders refer to customers and products.
FILES = (("products", "products.csv"), ("customers", "customers.csv"), ("orders", "orders.csv"))


async def load_demo_data(sessions: Any) -> ImportReport:
    """Load (or re-load: idempotent) the demo files. ``sessions``: async_sessionmaker or CrmStore."""
    report = ImportReport(kind="demo")
    for kind, name in FILES:
        report = report.merge(await import_file(sessions, kind, DEMO_DIR / name))  # type: ignore[arg-type]
    report.kind = "demo"
    return report


# Demo console accounts, created only into an empty user table (never next to real accounts).
DEMO_PASSWORD = "demo-password"
DEMO_USERS = (
    ("admin", "admin", "Администратор (демо)", None),
    ("supervisor", "supervisor", "Ольга, старший смены (демо)", None),
    ("operator", "operator", "Анна, оператор (демо)", "PJSIP/101"),
)


async def create_demo_users(sessions: Any) -> list[str]:
    """Create the demo accounts when there are no users at all; returns the names created."""
    accounts = AccountStore(sessions)
    if await accounts.list_users():
        return []
    for username, role, name, interface in DEMO_USERS:
        await accounts.create_user(username, DEMO_PASSWORD, role, display_name=name, operator_interface=interface)
    return [username for username, *_ in DEMO_USERS]


async def demo_passwords_in_use(sessions: Any) -> list[str]:
    """The active demo accounts that still have ``DEMO_PASSWORD`` (``ivr serve`` refuses to listen
    beyond loopback while there is one). One password check per demo account present."""
    accounts = AccountStore(sessions)
    present = {account.username for account in await accounts.list_users() if account.active}
    return [name for name, *_ in DEMO_USERS
            if name in present and await accounts.authenticate(name, DEMO_PASSWORD) is not None]
