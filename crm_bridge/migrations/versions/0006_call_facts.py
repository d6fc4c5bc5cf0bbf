"""Calls keep the facts their outcome is decided from; the robot's old word "abandoned" is retired.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 12:00:00

``calls.facts`` (JSON, nullable): what the robot and the AMI tracker saw (issue 8). Rows written
before it keep NULL; the store reads their outcome as the facts it implies
(``crm_bridge.contract.outcomes.facts_implying``). The outcome "abandoned" (the robot's half of
the story, refined by the tracker to "abandoned_in_ivr" when AMI was on) becomes "abandoned_in_ivr":
one word per outcome in the statistics and the call list.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("facts", sa.JSON(), nullable=True))
    op.execute("UPDATE calls SET outcome = 'abandoned_in_ivr' WHERE outcome = 'abandoned'")


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:  # SQLite drops columns by rebuilding
        batch.drop_column("facts")
