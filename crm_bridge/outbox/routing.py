"""Which targets want which events, and the outbox rows a batch of timeline records makes.

Pure: no I/O. ``CallLog`` asks ``rows_for`` inside its batch transaction and inserts the result with
one ``executemany``; with no target configured there is no routing at all, so the call's hot path
runs no statement more than before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from crm_bridge.contract.crm import EXPORTED, OutboxState
from crm_bridge.contract.events import EventKind


class EventRecord(Protocol):
    """What routing reads of a timeline record (``crm_bridge.call_log.TimelineRecord``)."""

    uid: str
    at: datetime
    call_id: str | None
    customer_id: str | None
    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class OutboxRouting:
    """``kinds`` per target name; a target only ever gets rows of the kinds it asked for."""

    targets: Mapping[str, frozenset[str]]

    def __post_init__(self) -> None:
        exported = {k.value for k in EXPORTED}
        for name, kinds in self.targets.items():
            unknown = set(kinds) - exported
            if unknown:
                raise ValueError(f"target {name}: event kinds {sorted(unknown)} are not exported")

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset().union(*self.targets.values()) if self.targets else frozenset()

    def rows_for(self, records: Iterable[EventRecord], now: datetime) -> list[dict[str, Any]]:
        """One row per (record, target wanting its kind), in submission order (the rows' ids keep it)."""
        rows: list[dict[str, Any]] = []
        wanted = self.kinds
        for r in records:
            if r.kind not in wanted:
                continue
            payload = event_payload(r)
            for target, kinds in self.targets.items():
                if r.kind in kinds:
                    rows.append({
                        "event_id": r.uid, "target": target, "kind": r.kind, "call_id": r.call_id,
                        "subject": subject_of(r.kind, r.data),
                        "occurred_at": r.at, "payload": payload, "state": OutboxState.PENDING.value,
                        "attempts": 0, "next_attempt_at": now, "created_at": now,
                    })
        return rows


ORDER_KINDS = frozenset({EventKind.ORDER_CREATED.value, EventKind.ORDER_CHANGED.value,
                         EventKind.ORDER_CANCELLED.value})


ORDER_SUBJECT = "order:"


def subject_of(kind: str, data: Mapping[str, Any]) -> str | None:
    """``order:<id>`` for an order's events: they are delivered in order per order (a change waits
    for the creation, whichever call or console user made them), and a target finds the remote id
    it answered to the order's first event (a Bitrix24 deal, an amoCRM lead) by it."""
    if kind in ORDER_KINDS and data.get("order_id"):
        return f"{ORDER_SUBJECT}{data['order_id']}"
    return None


def event_payload(r: EventRecord) -> dict[str, Any]:
    """The event as every target sees it (the webhook's body; crm_bridge/connectors/webhook.schema.json)."""
    body = {
        "event_id": r.uid, "kind": r.kind, "call_id": r.call_id, "customer_id": r.customer_id,
        "occurred_at": r.at.isoformat(), "data": dict(r.data),
    }
    # JSON types only (a Decimal total becomes its text), as the timeline's own column stores it.
    return json.loads(json.dumps(body, ensure_ascii=False, default=str))
