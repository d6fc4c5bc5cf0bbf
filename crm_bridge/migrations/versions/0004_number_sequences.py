"""PostgreSQL order and invoice numbers from sequences, continuing the counter table; the orders
index the caller lookup reads gains ``id``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 12:00:00

Before: numbers came from the ``sequences`` counter table (``UPDATE … RETURNING``), whose row lock is
held until the order's transaction commits, so every writer queued behind the slowest one. Now
PostgreSQL takes them from ``order_number_seq`` / ``invoice_number_seq`` (no lock held past the
``nextval``), started right after the counters' current values so numbering continues. The counter
rows are left as they were; the downgrade writes the sequences' positions back into them.

SQLite has no sequences and keeps the counter table (one writer at a time anyway).

``ix_orders_customer_id_ordered_at`` becomes ``…_ordered_at_id``: the lookup's "newest order of the
customer" (``ORDER BY ordered_at DESC, id DESC LIMIT 1``) is then one backward index probe instead of
an index scan plus an incremental sort (EXPLAIN in bench/lookup_1m.py). Both backends.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (sequence, counter row it continues, first number when the counter row is missing)
SEQUENCES = (("order_number_seq", "order", 1001), ("invoice_number_seq", "invoice", 1))


def upgrade() -> None:
    op.create_index(op.f("ix_orders_customer_id_ordered_at_id"), "orders", ["customer_id", "ordered_at", "id"])
    op.drop_index(op.f("ix_orders_customer_id_ordered_at"), table_name="orders")
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for sequence, counter, first in SEQUENCES:
        value = bind.execute(sa.text("SELECT value FROM sequences WHERE name = :n"), {"n": counter}).scalar()
        start = first if value is None else max(int(value) + 1, 1)
        op.execute(sa.text(f"CREATE SEQUENCE {sequence} START WITH {start} MINVALUE 1"))


def downgrade() -> None:
    op.create_index(op.f("ix_orders_customer_id_ordered_at"), "orders", ["customer_id", "ordered_at"])
    op.drop_index(op.f("ix_orders_customer_id_ordered_at_id"), table_name="orders")
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for sequence, counter, _ in SEQUENCES:
        # The last number handed out (the start minus one when none was).
        last = bind.execute(
            sa.text(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {sequence}")
        ).scalar_one()
        bind.execute(
            sa.text("UPDATE sequences SET value = :v WHERE name = :n"), {"v": int(last), "n": counter}
        )
        op.execute(sa.text(f"DROP SEQUENCE {sequence}"))
