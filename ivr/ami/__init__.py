"""Asterisk Manager Interface: a self-healing client (see client.py for why not panoramisk)."""

from ivr.ami.client import (
    AmiActionError,
    AmiClient,
    AmiError,
    AmiNotConnected,
    AmiTimeout,
    MessageParser,
    encode_action,
)

__all__ = [
    "AmiActionError",
    "AmiClient",
    "AmiError",
    "AmiNotConnected",
    "AmiTimeout",
    "MessageParser",
    "encode_action",
]
