"""Initial schema of the CRM store (hand-checked autogenerate; a test compares it with the models).

Revision ID: 0001
Revises:
Create Date: 2026-11-27 04:33:49.622729
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("patronymic", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customers_customer_id")),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("unit", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_en", sa.String(length=50), nullable=True),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )
    op.create_table(
        "sequences",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sequences")),
    )
    op.create_table(
        "timeline_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_events")),
    )
    op.create_index(op.f("ix_timeline_events_call_id"), "timeline_events", ["call_id"], unique=False)
    op.create_index(op.f("ix_timeline_events_customer_id"), "timeline_events", ["customer_id"], unique=False)

    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=200), nullable=True),
        sa.Column("normalized_number", sa.String(length=20), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.Column("script", sa.String(length=100), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=50), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_calls_customer_id_customers"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_normalized_number"), "calls", ["normalized_number"], unique=False)
    op.create_index(op.f("ix_calls_started_at"), "calls", ["started_at"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("delivery_date", sa.Date(), nullable=True),
        sa.Column("total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_orders_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_orders_idempotency_key")),
        sa.UniqueConstraint("order_id", name=op.f("uq_orders_order_id")),
    )
    op.create_index(op.f("ix_orders_call_id"), "orders", ["call_id"], unique=False)
    op.create_index(op.f("ix_orders_customer_id_ordered_at"), "orders", ["customer_id", "ordered_at"], unique=False)

    op.create_table(
        "phones",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_phones_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phones")),
        sa.UniqueConstraint("number", "customer_id", name=op.f("uq_phones_number_customer_id")),
    )
    op.create_index(op.f("ix_phones_customer_id"), "phones", ["customer_id"], unique=False)
    op.create_index(op.f("ix_phones_number"), "phones", ["number"], unique=False)

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subtotal", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("vat_rate", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("vat_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_invoices_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("order_id", name=op.f("uq_invoices_order_id")),
    )
    op.create_table(
        "order_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("unit", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_en", sa.String(length=50), nullable=True),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
        sa.UniqueConstraint("order_id", "line_no", name=op.f("uq_order_lines_order_id_line_no")),
    )
    # Counters start so that the first order is 1001 and the first invoice is 1.
    sequences = sa.table("sequences", sa.column("name", sa.String), sa.column("value", sa.Integer))
    op.bulk_insert(sequences, [{"name": "order", "value": 1000}, {"name": "invoice", "value": 0}])


def downgrade() -> None:
    op.drop_table("order_lines")
    op.drop_table("invoices")
    op.drop_index(op.f("ix_phones_number"), table_name="phones")
    op.drop_index(op.f("ix_phones_customer_id"), table_name="phones")

    op.drop_table("phones")
    op.drop_index(op.f("ix_orders_customer_id_ordered_at"), table_name="orders")
    op.drop_index(op.f("ix_orders_call_id"), table_name="orders")

    op.drop_table("orders")
    op.drop_index(op.f("ix_calls_started_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_normalized_number"), table_name="calls")

    op.drop_table("calls")
    op.drop_index(op.f("ix_timeline_events_customer_id"), table_name="timeline_events")
    op.drop_index(op.f("ix_timeline_events_call_id"), table_name="timeline_events")

    op.drop_table("timeline_events")
    op.drop_table("sequences")
    op.drop_table("products")
    op.drop_table("customers")
