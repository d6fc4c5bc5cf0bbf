"""What a target is to the delivery worker, and how a delivery ends.

The exception tree at this boundary (the worker catches exactly these; anything else is a bug,
logged and retried like ``Retry``)::

    DeliveryError               message already scrubbed of the target's secrets
    ├── Retry                   the target was unreachable, slow, 5xx, or said "later": back off
    │   └── Throttled           the target's own rate limit: wait ``after`` s, not counted as an attempt
    └── Refused                 the target will never take this row as it is: dead letter at once
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from crm_bridge.dto import CallView, OutboxItem
from crm_bridge.transcripts import TranscriptView


class DeliveryError(Exception):
    pass


class Retry(DeliveryError):
    pass


class Throttled(Retry):
    def __init__(self, message: str, after: float = 1.0) -> None:
        super().__init__(message)
        self.after = after


class Refused(DeliveryError):
    pass


async def _nothing(_key: str) -> str | None:
    return None


async def _go() -> None:
    return None


async def _no_transcript(_transcript_id: int) -> TranscriptView | None:
    return None


@dataclass(frozen=True)
class DeliveryContext:
    """What a target may look up while delivering (read-only, from our store)."""

    call: Callable[[str], Awaitable[CallView | None]]  # the call row as it stands now
    # What this target answered to an earlier event of the call: (call_id, kind) -> remote ref.
    remote_ref: Callable[[str, str], Awaitable[str | None]]
    # What it answered to the first event of a subject ("order:<id>" -> the deal's id), if any.
    subject_ref: Callable[[str], Awaitable[str | None]] = _nothing
    # Wait for the target's rate limit; called before every request the delivery makes.
    pace: Callable[[], Awaitable[None]] = _go
    # A transcript with its words (a ``transcript.ready`` row's ``transcript_id``), as stored now.
    transcript: Callable[[int], Awaitable[TranscriptView | None]] = _no_transcript


class Target(Protocol):
    """One configured target. ``name`` is the outbox's ``target`` column; ``kinds`` the event kinds it
    wants (crm_bridge.contract.crm.EXPORTED); ``rate``/``burst`` its token bucket."""

    name: str
    kinds: frozenset[str]
    rate: float
    burst: int

    async def deliver(self, item: OutboxItem, context: DeliveryContext) -> str | None:
        """Deliver one row; returns what later events of the call need (a remote id) or None.
        Raises a ``DeliveryError`` (scrubbed) when it did not. Awaits ``context.pace()`` before
        each request it sends (the target's rate limit)."""
        ...

    async def close(self) -> None: ...
