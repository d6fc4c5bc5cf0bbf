"""The generic webhook: one signed JSON POST per event, for 1C or anything else (issue 11).

Body: the event as ``crm_bridge.outbox.routing.event_payload`` builds it, described by
``webhook.schema.json`` beside this file. Headers:

- ``X-Ivr-Event-Id``: the event's id; the same event is always the same id (dedupe on it: a
  delivery whose answer was lost is sent again);
- ``X-Ivr-Event``: its kind;
- ``X-Ivr-Timestamp``: unix seconds when this attempt was signed (reject outside your replay window);
- ``X-Ivr-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.

Answers: 2xx delivered; 429 (honouring ``Retry-After``), 408 and 5xx, or no answer: try again with
backoff; any other 4xx: the receiver refuses the event as it is, dead letter at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping

from crm_bridge.connectors.base import DeliveryContext, Refused, Retry, Throttled
from crm_bridge.connectors.http import HttpClient
from crm_bridge.connectors.secrets import Scrubber, scrub_url
from crm_bridge.dto import OutboxItem

SIGNATURE = "X-Ivr-Signature"
TIMESTAMP = "X-Ivr-Timestamp"
EVENT_ID = "X-Ivr-Event-Id"
EVENT = "X-Ivr-Event"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float, window: float = 300.0) -> bool:
    """The receiver's check (the README shows the same in a few lines): a valid signature of a
    timestamp within ``window`` seconds of ``now``."""
    timestamp = headers.get(TIMESTAMP, "")
    given = headers.get(SIGNATURE, "")
    try:
        fresh = abs(now - int(timestamp)) <= window
    except ValueError:
        return False
    return fresh and hmac.compare_digest(given, signature(secret, timestamp, body))


class WebhookTarget:
    def __init__(self, name: str, url: str, secret: str, *, kinds: frozenset[str], rate: float, burst: int,
                 timeout: float, clock: Callable[[], float] = time.time) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: url must be http(s), got {scrub_url(url)!r}")
        if len(secret) < 16:
            raise ValueError(f"{name}: secret must be at least 16 characters")
        self.name, self.kinds, self.rate, self.burst = name, kinds, rate, burst
        self.address = scrub_url(url)
        self._url, self._secret, self._clock = url, secret, clock
        self._scrub = Scrubber([url, secret])
        self._http = HttpClient(timeout, self._scrub)

    async def deliver(self, item: OutboxItem, context: DeliveryContext) -> str | None:
        body = json.dumps(item.payload, ensure_ascii=False, separators=(",", ":")).encode()
        await context.pace()
        timestamp = str(int(self._clock()))
        answer = await self._http.post(self._url, body, {
            "Content-Type": "application/json", EVENT_ID: item.event_id, EVENT: item.kind,
            TIMESTAMP: timestamp, SIGNATURE: signature(self._secret, timestamp, body),
        })
        if 200 <= answer.status < 300:
            return None
        said = self._scrub(answer.body[:200].decode("utf-8", "replace"))
        if answer.status == 429:
            raise Throttled(f"HTTP 429 {said}", _retry_after(answer.headers))
        if answer.status == 408 or answer.status >= 500:
            raise Retry(f"HTTP {answer.status} {said}")
        raise Refused(f"HTTP {answer.status} {said}")

    async def close(self) -> None:
        await self._http.close()


def _retry_after(headers: Mapping[str, str]) -> float:
    try:
        return min(3600.0, max(1.0, float(headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0
