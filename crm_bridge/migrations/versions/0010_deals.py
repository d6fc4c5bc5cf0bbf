"""Deals (сделки): the commercial thread of an order, with a stage, an owner, an amount (issue 11).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 17:30:00

``deals`` (one per order through ``deals.order_id``, unique; lead-like deals of unknown callers have
no order, a ``phone`` and the ``call_id`` that opened them), ``calls.deal_id`` (the deal a call is
about) and ``timeline_events.deal_id`` (events of a deal that are not a call's).

Backfill: every existing order gets its deal. A cancelled order's deal is ``cancelled`` (closed at
the cancel); any other order's is ``confirmed``, not ``new``: each was accepted already (the
caller's key, an operator, the accounting system's history), and ``new`` would fill the operators'
"to handle" column with the whole order history. Nothing says whether it was delivered or paid, so
the backfill does not claim it. The codes are the default pipeline's (``[deals] stages``): a
pipeline configured without them shows such deals under their raw code until moved. The amount is
what the customer pays (the invoice's total; an imported order without an invoice: its total).
Existing calls are linked to the deal of the order they placed, else to their customer's newest
deal created by the time the call started.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), server_default=sa.text("'RUB'"), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_deals_customer_id_customers"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_deals_order_id_orders"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deals")),
        sa.UniqueConstraint("order_id", name=op.f("uq_deals_order_id")),
        sa.UniqueConstraint("call_id", name=op.f("uq_deals_call_id")),
    )
    op.create_index(op.f("ix_deals_customer_id_created_at"), "deals", ["customer_id", "created_at"])
    op.create_index(op.f("ix_deals_stage_updated_at"), "deals", ["stage", "updated_at"])
    op.create_index(op.f("ix_deals_phone"), "deals", ["phone"])
    with op.batch_alter_table("calls") as batch:  # SQLite adds a foreign key by rebuilding the table
        batch.add_column(sa.Column("deal_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_calls_deal_id_deals"), "deals", ["deal_id"], ["id"], ondelete="SET NULL")
        batch.create_index(op.f("ix_calls_deal_id"), ["deal_id"])
    op.add_column("timeline_events", sa.Column("deal_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_timeline_events_deal_id"), "timeline_events", ["deal_id"])

    op.execute(
        """
INSERT INTO deals (customer_id, title, stage, amount, currency, order_id, created_at, updated_at, closed_at)
SELECT o.customer_id, 'Заказ ' || o.order_id,
       CASE WHEN o.status = 'cancelled' THEN 'cancelled' ELSE 'confirmed' END,
       COALESCE(i.total, o.total), 'RUB', o.id, o.ordered_at, COALESCE(o.changed_at, o.ordered_at),
       CASE WHEN o.status = 'cancelled' THEN COALESCE(o.changed_at, o.ordered_at) END
FROM orders o LEFT JOIN invoices i ON i.order_id = o.id
ORDER BY o.ordered_at, o.id
"""
    )
    op.execute(
        """
UPDATE calls SET deal_id = COALESCE(
    (SELECT d.id FROM deals d JOIN orders o ON o.id = d.order_id
      WHERE o.call_id = calls.call_id ORDER BY d.id DESC LIMIT 1),
    (SELECT d.id FROM deals d
      WHERE d.customer_id = calls.customer_id AND d.created_at <= calls.started_at
      ORDER BY d.created_at DESC, d.id DESC LIMIT 1))
WHERE calls.customer_id IS NOT NULL OR EXISTS (SELECT 1 FROM orders o WHERE o.call_id = calls.call_id)
"""
    )


def downgrade() -> None:
    with op.batch_alter_table("timeline_events") as batch:
        batch.drop_index(op.f("ix_timeline_events_deal_id"))
        batch.drop_column("deal_id")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index(op.f("ix_calls_deal_id"))
        batch.drop_constraint(op.f("fk_calls_deal_id_deals"), type_="foreignkey")
        batch.drop_column("deal_id")
    op.drop_index(op.f("ix_deals_phone"), table_name="deals")
    op.drop_index(op.f("ix_deals_stage_updated_at"), table_name="deals")
    op.drop_index(op.f("ix_deals_customer_id_created_at"), table_name="deals")
    op.drop_table("deals")
