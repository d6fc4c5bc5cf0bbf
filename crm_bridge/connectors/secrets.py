"""A target's secrets never leave the process: every error text passes through ``Scrubber``.

Bitrix24's incoming webhook carries its token in the URL path (``/rest/<user>/<token>/``), so a
connection error that quotes the URL would quote the token; the webhook target's HMAC secret must
not show either. ``scrub_url`` is what logs and the console print of a target's address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_REST_PATH = re.compile(r"(/rest/[^/]+/)[^/?#]+")


def scrub_url(url: str) -> str:
    """The URL without user info, query, or the token segment of a Bitrix24 ``/rest/<user>/<token>``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = _REST_PATH.sub(lambda m: m.group(1) + MASK, parts.path)
    return urlunsplit((parts.scheme, host, path, MASK if parts.query else "", ""))


class Scrubber:
    """Replaces each secret (and the raw URL that holds one) in a text by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a URL is replaced whole before its token alone is.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
