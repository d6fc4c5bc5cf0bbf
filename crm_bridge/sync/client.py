"""The pull's side of talking to a CRM: a pace below its rate limit, retries with backoff, one error tree.

The exception tree at this boundary (the runner catches exactly ``SyncError``; every message is
already scrubbed of the CRM's secrets — the Bitrix24 webhook token, the amoCRM bearer token)::

    SyncError                   (a CrmError)
    ├── CrmUnreachable          refused, timeout, HTTP 5xx — after ``retries`` attempts with backoff
    ├── CrmAuthRefused          401, expired_token, INVALID_CREDENTIALS, insufficient_scope: an admin
    │                           must fix the webhook or the token; retrying will not help
    ├── CrmThrottled            QUERY_LIMIT_EXCEEDED / 429 still answered after ``retries`` backoffs
    └── CrmBadAnswer            a 4xx refusal or a body that is not the documented shape

A page is asked for, and only once it has come back whole is anything written: an error never
leaves a half page in the store (runner.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from crm_bridge.errors import CrmError

Sleep = Callable[[float], Awaitable[None]]


class SyncError(CrmError):
    pass


class CrmUnreachable(SyncError):
    pass


class CrmAuthRefused(SyncError):
    pass


class CrmThrottled(SyncError):
    def __init__(self, message: str, after: float = 1.0) -> None:
        super().__init__(message)
        self.after = after


class CrmBadAnswer(SyncError):
    pass


@dataclass
class Pace:
    """A token bucket: at most ``rate`` requests per second with bursts of ``burst`` (Bitrix24 about
    2/s per webhook, amoCRM 7/s per account). The clock and the sleep are the test's to control."""

    rate: float
    burst: int = 1
    clock: Callable[[], float] = time.monotonic
    sleep: Sleep = asyncio.sleep

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._at = self.clock()

    async def take(self) -> None:
        while True:
            now = self.clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await self.sleep((1 - self._tokens) / self.rate)


@dataclass(frozen=True)
class Retrying:
    """How often a throttled or failed request is asked again, and how long to wait in between:
    ``first`` seconds doubling up to ``most`` (a ``Retry-After`` the CRM sends wins when longer)."""

    retries: int = 5
    first: float = 1.0
    most: float = 30.0

    async def run(self, attempt: Callable[[], Awaitable[Any]], sleep: Sleep,
                  on_wait: Callable[[str, float], None] | None = None) -> Any:
        wait = self.first
        for n in range(self.retries + 1):
            try:
                return await attempt()
            except (CrmThrottled, CrmUnreachable) as exc:
                if n == self.retries:
                    raise
                pause = max(wait, exc.after) if isinstance(exc, CrmThrottled) else wait
                pause = min(pause, self.most)
                if on_wait is not None:
                    on_wait(str(exc), pause)
                await sleep(pause)
                wait = min(wait * 2, self.most)
        raise AssertionError("unreachable")
