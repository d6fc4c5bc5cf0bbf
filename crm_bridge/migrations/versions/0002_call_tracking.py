"""Call tracking from AMI (queue, operator, hang-up, recording columns on calls) and callback tasks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALL_COLUMNS = [
    sa.Column("queue", sa.String(length=100), nullable=True),
    sa.Column("queue_entered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("wait_seconds", sa.Float(), nullable=True),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("talk_seconds", sa.Float(), nullable=True),
    sa.Column("operator_interface", sa.String(length=200), nullable=True),
    sa.Column("operator_name", sa.String(length=200), nullable=True),
    sa.Column("hangup_by", sa.String(length=16), nullable=True),
    sa.Column("recording_path", sa.String(length=500), nullable=True),
    sa.Column("recording_seconds", sa.Float(), nullable=True),
    sa.Column("recording_bytes", sa.Integer(), nullable=True),
    sa.Column("transfers", sa.Integer(), server_default=sa.text("0"), nullable=False),
]


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild): every new column is nullable or has a server default.
    for column in CALL_COLUMNS:
        op.add_column("calls", column)

    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("number", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("open_key", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_tasks")),
    )
    op.create_index(op.f("ix_callback_tasks_call_id"), "callback_tasks", ["call_id"], unique=False)
    op.create_index(
        op.f("ix_callback_tasks_status_due_at"), "callback_tasks", ["status", "due_at"], unique=False
    )
    # One open task per customer/number, race-safe: a partial unique index (both backends).
    op.create_index(
        op.f("ix_callback_tasks_open_key"),
        "callback_tasks",
        ["open_key"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_tasks_open_key"), table_name="callback_tasks")
    op.drop_index(op.f("ix_callback_tasks_status_due_at"), table_name="callback_tasks")
    op.drop_index(op.f("ix_callback_tasks_call_id"), table_name="callback_tasks")
    op.drop_table("callback_tasks")
    with op.batch_alter_table("calls") as batch:  # SQLite drops columns by rebuilding the table
        for column in reversed(CALL_COLUMNS):
            batch.drop_column(column.name)
