"""Timeline rows carry the unique id of the record that wrote them (replay of a spool lands once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:30:00

The column is nullable: rows written before it (and by importers) have no id, and NULLs never
collide in a unique index on either backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("timeline_events", sa.Column("event_uid", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_timeline_events_event_uid"), "timeline_events", ["event_uid"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_timeline_events_event_uid"), table_name="timeline_events")
    with op.batch_alter_table("timeline_events") as batch:  # SQLite drops columns by rebuilding
        batch.drop_column("event_uid")
