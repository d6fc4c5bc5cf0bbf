"""The pull from a CRM (crm_bridge/sync): where each run stands, and which local row a CRM record is.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "external_refs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("entity", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("local_key", sa.String(64), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_refs")),
        sa.UniqueConstraint("source", "entity", "external_id", name=op.f("uq_external_refs_source_entity_external_id")),
    )
    op.create_index(op.f("ix_external_refs_entity_local_key"), "external_refs", ["entity", "local_key"])
    op.create_table(
        "sync_cursors",
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("entity", sa.String(20), nullable=False),
        sa.Column("since", sa.String(40), nullable=True),
        sa.Column("run_since", sa.String(40), nullable=True),
        sa.Column("run_mark", sa.String(40), nullable=True),
        sa.Column("run_page", sa.String(40), nullable=True),
        sa.Column("pages", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("source", "entity", name=op.f("pk_sync_cursors")),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
    op.drop_index(op.f("ix_external_refs_entity_local_key"), table_name="external_refs")
    op.drop_table("external_refs")
