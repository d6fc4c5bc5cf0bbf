"""Asterisk's side of AudioSocket(), as the capture in tests/data/asterisk-traces/audiosocket/ shows it.

Connects, sends the UUID first, then whatever the test makes the caller do (audio frames, DTMF
frames, raw bytes, hanging up); reads what the server sends, and on the hang-up message closes its
side as Asterisk does (AudioSocket() returns, the dialplan continues).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ivr.audiosocket.protocol import FRAME_BYTES, Kind, Message, audio_message, dtmf_message, read_message, uuid_message

TRACES = Path(__file__).resolve().parent.parent / "data" / "asterisk-traces" / "audiosocket"
_LINE = re.compile(
    r"(?P<dir>AST -> server|server -> AST)(?: #\d+)?: header (?P<header>[0-9a-f]{6}) kind=0x(?P<kind>[0-9a-f]+)"
    r" \((?P<name>[^)]*)\) len=(?P<len>\d+)(?: payload=(?P<payload>\S+))?"
)


@dataclass(frozen=True)
class CapturedHeader:
    direction: str  # "AST -> server" or "server -> AST"
    header: bytes
    kind: int
    length: int
    payload: str | None  # hex for UUID, b'5' style for DTMF, as the capture prints it


def captured_headers(name: str) -> list[CapturedHeader]:
    found = []
    for line in (TRACES / name).read_text().splitlines():
        match = _LINE.search(line)
        if match:
            found.append(CapturedHeader(match["dir"], bytes.fromhex(match["header"]), int(match["kind"], 16),
                                        int(match["len"]), match["payload"]))
    return found


def captured_uuid(name: str) -> uuid.UUID:
    match = re.search(r"AS_UUID=([0-9a-f-]{36})", (TRACES / name).read_text())
    assert match is not None
    return uuid.UUID(match[1])


@dataclass
class FakeAudioSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    audio_frames: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic time, payload)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)  # the server sent 0x00
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the server closed the connection
    other: list[Message] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at every message and at close
    _reading: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int, call_uuid: uuid.UUID | None, host: str = "127.0.0.1") -> FakeAudioSocket:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        if call_uuid is not None:
            writer.write(uuid_message(call_uuid))
            await writer.drain()
        client._reading = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            while True:
                message = await read_message(self.reader)
                if message is None:
                    break
                if message.kind is Kind.AUDIO:
                    self.audio_frames.append((time.monotonic(), message.payload))
                    self._arrived.set()
                elif message.kind is Kind.HANGUP:
                    self.hung_up.set()
                    await self.hang_up()  # Asterisk ends AudioSocket() and closes its socket
                    break
                else:
                    self.other.append(message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def send_audio(self, pcm: bytes) -> None:
        """slin16 8 kHz in 20 ms frames (the last padded), as fast as the socket takes them."""
        if len(pcm) % FRAME_BYTES:
            pcm += b"\0" * (FRAME_BYTES - len(pcm) % FRAME_BYTES)
        for offset in range(0, len(pcm), FRAME_BYTES):
            self.writer.write(audio_message(pcm[offset : offset + FRAME_BYTES]))
        await self.writer.drain()

    async def send_dtmf(self, digit: str) -> None:
        self.writer.write(dtmf_message(digit))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_frames(self, count: int) -> None:
        while len(self.audio_frames) < count:
            if self.closed.is_set():
                raise AssertionError(f"closed after {len(self.audio_frames)} of {count} frames")
            self._arrived.clear()
            await self._arrived.wait()

    async def hang_up(self) -> None:
        """The caller (or Asterisk) closes the connection."""
        if not self.writer.is_closing():
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    async def aclose(self) -> None:
        await self.hang_up()
        if self._reading is not None:
            await asyncio.wait_for(self._reading, 5)
