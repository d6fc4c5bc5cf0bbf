"""Orders can be corrected: cancelled or edited until the delivery cut-off (issue 10).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 15:00:00

``orders``: ``status`` ("placed" | "cancelled"), ``revision`` (1, + 1 per edit), and the last
change's ``changed_at``, ``changed_by`` (console user) and ``change_reason``. ``invoices``:
``status`` ("issued" | "cancelled") and ``revision`` (an edited order's invoice is recomputed under
the same number). Existing rows read as placed / issued, revision 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'placed'")))
    op.add_column("orders", sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("1")))
    op.add_column("orders", sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("changed_by", sa.String(200), nullable=True))
    op.add_column("orders", sa.Column("change_reason", sa.Text(), nullable=True))
    op.add_column("invoices", sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'issued'")))
    op.add_column("invoices", sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("1")))


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:  # SQLite drops columns by rebuilding
        batch.drop_column("revision")
        batch.drop_column("status")
    with op.batch_alter_table("orders") as batch:
        for column in ("change_reason", "changed_by", "changed_at", "revision", "status"):
            batch.drop_column(column)
