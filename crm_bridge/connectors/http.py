"""The one HTTP client shape the targets share: a lazily opened aiohttp session with a deadline.

Transport failures (refused, reset, DNS, timeout) become ``Retry`` with a scrubbed message: the
exception text of aiohttp quotes the URL, and a target's URL may hold its token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from crm_bridge.connectors.base import Retry
from crm_bridge.connectors.secrets import Scrubber


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpClient:
    def __init__(self, timeout: float, scrub: Scrubber) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._scrub = scrub
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        return await self.request("POST", url, body, headers)

    async def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, data=body, headers=dict(headers),
                                             allow_redirects=False) as resp:
                return Answer(resp.status, dict(resp.headers), await resp.read())
        except TimeoutError as exc:
            raise Retry("timeout") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise Retry(self._scrub(f"{type(exc).__name__}: {exc}")[:300]) from None

    async def get(self, url: str, headers: Mapping[str, str]) -> Answer:
        """A GET with the same deadline and scrubbing (the pull from a CRM, crm_bridge/sync)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url, headers=dict(headers), allow_redirects=False) as resp:
                return Answer(resp.status, dict(resp.headers), await resp.read())
        except TimeoutError as exc:
            raise Retry("timeout") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise Retry(self._scrub(f"{type(exc).__name__}: {exc}")[:300]) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
