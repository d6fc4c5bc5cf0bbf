"""Our own exception types for the FastAGI wire layer.

Wire conditions (``511``, ``HANGUP``, multi-line ``520``, a closed socket, a missing reply) are mapped
to these at the boundary so call flows never see raw protocol text.
"""

from __future__ import annotations


class AgiError(Exception):
    """Base class of every FastAGI error."""


class AgiHangup(AgiError):
    """The channel is gone: a ``HANGUP`` line was seen, a command got ``511``, or the socket died."""


class AgiConnectionLost(AgiHangup):
    """The FastAGI socket was closed or reset by the peer (or by us)."""


class AgiCommandError(AgiError):
    """Asterisk rejected a command: ``510`` (unknown command), ``520`` (bad syntax) or another code."""

    def __init__(self, code: int, message: str, *, command: str = "", usage: str = "") -> None:
        super().__init__(f"{code} {message}" + (f" (command: {command})" if command else ""))
        self.code = code
        self.message = message
        self.command = command
        self.usage = usage


class AgiProtocolError(AgiError):
    """A line from Asterisk could not be parsed."""


class AgiTimeout(AgiError):
    """A reply did not arrive within its deadline."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"no reply to {command!r} within {timeout:g}s")
        self.command = command
        self.timeout = timeout


class AgiEnvError(AgiError):
    """The env block was malformed, unfinished, too large or too slow."""


class AgiPlaybackFailed(AgiError):
    """``STREAM FILE``/``GET DATA`` answered ``result=-1`` while the channel is still up (missing file)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"playback failed on a live channel (missing file?): {path}")
        self.path = path
