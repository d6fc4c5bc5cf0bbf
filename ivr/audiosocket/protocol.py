"""AudioSocket framing as Asterisk 22 speaks it (res/res_audiosocket.c, tests/data/asterisk-traces/audiosocket/).

Every message is a 3-byte header, kind and a big-endian 16-bit payload length, then the payload:

========  ================  ==========================================================
kind      payload           direction
========  ================  ==========================================================
``0x00``  none              to Asterisk: hang up the AudioSocket leg; the dialplan continues
``0x01``  16 bytes          from Asterisk, first message: the UUID given to AudioSocket()
``0x03``  1 ASCII byte      from Asterisk: a DTMF digit the caller pressed
``0x10``  slin16 LE, 8 kHz  both ways: 320 bytes = 20 ms
``0xff``  error code        from Asterisk: something failed on its side
========  ================  ==========================================================

Asterisk accepts only ``0x00`` and ``0x10`` from us (anything else ends its AudioSocket()). Newer
releases add ``0x11`` (16 kHz audio) which the 8 kHz dialplan application never sends; we refuse it
with the other unknown kinds. The reader is strict: an unknown kind, a length the kind cannot have,
a truncated message or a UUID not first is a :class:`ProtocolError` (the server logs one line and
closes the connection), never a guess about where the next header starts.
"""

from __future__ import annotations

import asyncio
import enum
import struct
import uuid
from dataclasses import dataclass

HEADER = struct.Struct(">BH")
RATE = 8000
FRAME_BYTES = RATE * 2 // 50  # 20 ms of slin16 at 8 kHz, what Asterisk sends and expects
# Asterisk sends 20 ms frames; a peer whose audio message claims more than a second is not Asterisk.
MAX_AUDIO_BYTES = RATE * 2
MAX_ERROR_BYTES = 64
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


class ProtocolError(ValueError):
    """The peer sent bytes that are not AudioSocket as Asterisk speaks it; the message says how."""


@dataclass(frozen=True)
class Message:
    kind: Kind
    payload: bytes = b""

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.payload)

    @property
    def digit(self) -> str:
        return self.payload.decode("ascii")


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"AudioSocket payload of {len(payload)} bytes does not fit a 16-bit length")
    return HEADER.pack(kind, len(payload)) + payload


HANGUP_MESSAGE = encode(Kind.HANGUP)


def audio_message(pcm: bytes) -> bytes:
    return encode(Kind.AUDIO, pcm)


def uuid_message(call: uuid.UUID) -> bytes:
    return encode(Kind.UUID, call.bytes)


def dtmf_message(digit: str) -> bytes:
    return encode(Kind.DTMF, digit.encode("ascii"))


def _check(kind: Kind, payload: bytes) -> None:
    size = len(payload)
    if kind is Kind.UUID and size != 16:
        raise ProtocolError(f"UUID message of {size} bytes (16 expected)")
    if kind is Kind.DTMF and (size != 1 or payload.decode("latin-1") not in DTMF_DIGITS):
        raise ProtocolError(f"DTMF message {payload[:8]!r} is not one digit")
    if kind is Kind.AUDIO and (size == 0 or size % 2):
        raise ProtocolError(f"audio message of {size} bytes (whole 16-bit samples expected)")


_LIMITS = {Kind.HANGUP: 0, Kind.UUID: 16, Kind.DTMF: 1, Kind.AUDIO: MAX_AUDIO_BYTES, Kind.ERROR: MAX_ERROR_BYTES}


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None if the peer closed the connection between messages."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(f"connection closed inside a header ({len(exc.partial)} of 3 bytes)") from None
    raw_kind, length = HEADER.unpack(header)
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise ProtocolError(f"unknown message kind 0x{raw_kind:02x} (header {header.hex()})") from None
    if length > _LIMITS[kind]:
        # Checked before reading: a bogus length must not make us wait for (or buffer) 64 KiB.
        raise ProtocolError(f"{kind.name} message claims {length} bytes (at most {_LIMITS[kind]})")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"connection closed inside a {kind.name} message "
                            f"({len(exc.partial)} of {length} bytes)") from None
    _check(kind, payload)
    return Message(kind, payload)
