"""Transcripts of call recordings, queued with the recording and written by a background worker (issue 12).

Search: ``search_text`` (the text lowercased in Python) is matched with LIKE '%word%' on both
backends. Not a tsvector: PostgreSQL's text search stems per language configuration (no Korean,
a Russian stemmer that SQLite cannot reproduce), so the two backends would answer differently; not
a pg_trgm index: ``CREATE EXTENSION`` needs a privileged role the service's database user usually
lacks, and a migration must not fail on it. The search always runs beside the other filters on a
table that holds one row per recorded call; a trigram index can be added by the DBA later without
changing a query (``CREATE INDEX … USING gin (search_text gin_trgm_ops)`` serves the same LIKE).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("recording_path", sa.String(500), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("search_text", sa.Text(), nullable=True),
        sa.Column("words", sa.JSON(), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("work_seconds", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
        sa.UniqueConstraint("call_id", "recording_path", name=op.f("uq_transcripts_call_id_recording_path")),
    )
    op.create_index(op.f("ix_transcripts_call_id"), "transcripts", ["call_id"])
    op.create_index(op.f("ix_transcripts_state_lease_until"), "transcripts", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index(op.f("ix_transcripts_state_lease_until"), table_name="transcripts")
    op.drop_index(op.f("ix_transcripts_call_id"), table_name="transcripts")
    op.drop_table("transcripts")
