"""The store's own exceptions: callers never need to catch SQLAlchemy or driver errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crm_bridge.dto import OrderView


class CrmError(Exception):
    """Base of every error the CRM store raises on purpose."""


class StoreUnavailable(CrmError):
    """The database could not be reached or failed: the IVR sends the caller to an operator."""


class ConnectionLost(StoreUnavailable):
    """A pooled connection turned out to be dead (server restart, backend terminated, network cut).

    The pool has already been recycled when this is raised; the store retries a unit of work once
    when that is safe (reads, idempotent writes), so callers only see it when the retry failed too.
    """


class UnknownCustomer(CrmError):
    def __init__(self, customer_id: str) -> None:
        super().__init__(f"unknown customer: {customer_id!r}")
        self.customer_id = customer_id


class UnknownProduct(CrmError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"unknown product: {sku!r}")
        self.sku = sku


class InactiveProduct(CrmError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"product is no longer sold: {sku!r}")
        self.sku = sku


class InvalidQuantity(CrmError):
    def __init__(self, sku: str, quantity: object) -> None:
        super().__init__(f"quantity must be a non-negative integer, got {quantity!r} for {sku!r}")
        self.sku = sku
        self.quantity = quantity


class EmptyOrder(CrmError):
    def __init__(self) -> None:
        super().__init__("order has no line with a positive quantity")


class IdempotencyConflict(CrmError):
    """The idempotency key already placed an order, and this request is another one: for another
    customer, with other lines or from another source. Nothing is written; the key's order stands
    as it was (``order``), so a caller can say which order stands (the API's 409, the robot's
    ``order_already_placed``). ``differs``: "customer", "lines" or "source"."""

    def __init__(self, idempotency_key: str, order: OrderView, differs: str) -> None:
        self.what = _DIFFERS.get(differs, f"with another {differs}")  # "with other lines", for messages
        super().__init__(f"idempotency key {idempotency_key!r} already placed order {order.order_id!r} {self.what}")
        self.idempotency_key = idempotency_key
        self.order = order
        self.order_id = order.order_id
        self.differs = differs


_DIFFERS = {"customer": "for another customer", "lines": "with other lines", "source": "from another source"}


class InvalidSource(CrmError):
    def __init__(self, source: str) -> None:
        super().__init__(f"order source must be 'import', 'ivr' or 'operator', got {source!r}")
        self.source = source


class ImportFileError(CrmError):
    """The file as a whole cannot be imported (missing, unreadable, no header, missing columns)."""


class RecordRejected(CrmError):
    """The database refused a value in a batch of call records (crm_bridge.call_log): retrying the
    same batch cannot succeed, split it to find the bad record."""


class UnknownOrder(CrmError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"unknown order: {order_id!r}")
        self.order_id = order_id


class OrderNotChangeable(CrmError):
    """The order may not be cancelled or edited (any more). ``why``: "cutoff" (the change deadline
    has passed), "cancelled" (already cancelled), "no_delivery_date" (imported history).
    ``message`` is the Russian sentence an operator reads."""

    def __init__(self, order_id: str, why: str, message: str) -> None:
        super().__init__(f"order {order_id!r} cannot be changed: {why}")
        self.order_id = order_id
        self.why = why
        self.message = message


class ChangeReasonRequired(CrmError):
    def __init__(self) -> None:
        super().__init__("a cancellation or an edit needs a reason")


class InvalidCustomer(CrmError):
    """A new customer's or an edit's fields are unusable; ``message`` is Russian, for the form."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid customer {field}: {message}")
        self.field = field
        self.message = message


class UnknownTask(CrmError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"unknown callback task: {task_id}")
        self.task_id = task_id


class UnknownDeal(CrmError):
    def __init__(self, deal_id: int) -> None:
        super().__init__(f"unknown deal {deal_id}")
        self.deal_id = deal_id


class InvalidStage(CrmError):
    """A stage code the configured pipeline (``[deals] stages``) does not have."""

    def __init__(self, stage: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown deal stage {stage!r} (one of {', '.join(known)})")
        self.stage = stage
        self.known = known
