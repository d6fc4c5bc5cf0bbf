"""Signed, expiring links to one call's recording, for a CRM to fetch (``GET /r/<token>``).

The token is ``<call id, base64url>.<expiry, unix seconds>.<HMAC-SHA256 of both, base64url>`` under
``crm.link_secret``: no session, no bearer token in the URL, and a link opens exactly the
recording of the call it names until it expires. A changed secret voids every link given out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class RecordingLinks:
    secret: str
    base_url: str  # the web server as the CRM reaches it, e.g. https://ivr.example.com
    ttl_seconds: float

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("crm.link_secret must be at least 16 characters")

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self.secret.encode(), body.encode(), hashlib.sha256).digest()[:24])

    def token(self, call_id: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl_seconds)
        body = f"{_b64(call_id.encode())}.{expires}"
        return f"{body}.{self._mac(body)}"

    def url(self, call_id: str, now: float | None = None, fmt: str | None = None) -> str:
        """The link; ``fmt="mp3"`` asks for an MP3 copy (the format is not signed: the token opens the
        call's recording, in whichever form)."""
        query = f"?format={fmt}" if fmt else ""
        return f"{self.base_url.rstrip('/')}/r/{self.token(call_id, now)}{query}"

    def call_id(self, token: str, now: float | None = None) -> str | None:
        """The call a valid, unexpired token names; None for anything else (no reason given out)."""
        try:
            encoded, expires, mac = token.split(".")
            if not hmac.compare_digest(mac, self._mac(f"{encoded}.{expires}")):
                return None
            if int(expires) < (time.time() if now is None else now):
                return None
            return _unb64(encoded).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
