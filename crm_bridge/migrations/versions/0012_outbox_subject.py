"""The outbox's subject: the thing an event is about beyond its call (``order:<id>``), so that an
order's later events find what the CRM answered to its first (the deal's id) and wait for it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("subject", sa.String(80), nullable=True))
    op.create_index(op.f("ix_outbox_subject_target"), "outbox", ["subject", "target"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_subject_target"), table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("subject")
