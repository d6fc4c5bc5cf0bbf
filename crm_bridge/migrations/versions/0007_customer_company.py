"""Customers may be companies: legal name, ИНН and КПП for the invoice's buyer line (issue 10).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 15:00:00

``customers.company`` / ``inn`` / ``kpp``: empty for a private person (the invoice then names the
person). Existing rows get "" through the server default; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("company", 300), ("inn", 12), ("kpp", 9))


def upgrade() -> None:
    for name, length in COLUMNS:
        op.add_column("customers", sa.Column(name, sa.String(length=length), nullable=False, server_default=""))


def downgrade() -> None:
    # Not batch mode: rebuilding ``customers`` on SQLite trips the foreign keys that point at it;
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+) drops an unindexed, unreferenced column in place.
    for name, _ in reversed(COLUMNS):
        op.execute(sa.text(f"ALTER TABLE customers DROP COLUMN {name}"))
