"""Several `ivr` processes on one PostgreSQL: who owns AMI, how live events reach every process.

PostgreSQL is the only shared state (advisory lock, LISTEN/NOTIFY); there is no protocol of our own.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url


def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (``postgresql+asyncpg://…``) as a plain DSN for ``asyncpg.connect``."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
