"""AudioSocket framing against the real Asterisk 22 capture, and the strict reader."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ivr.audiosocket.protocol import (
    HANGUP_MESSAGE,
    HEADER,
    MAX_AUDIO_BYTES,
    Kind,
    ProtocolError,
    audio_message,
    dtmf_message,
    encode,
    read_message,
    uuid_message,
)
from tests.audiosocket.fake_asterisk import captured_headers, captured_uuid


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize("capture", ["app.txt", "chan.txt"])
async def test_every_captured_message_reads_as_asterisk_sent_it(capture):
    headers = captured_headers(capture)
    kinds = {h.kind for h in headers}
    assert kinds == {0x00, 0x01, 0x03, 0x10}, "the capture has hang-up, UUID, DTMF and audio"
    call = captured_uuid(capture)
    for h in headers:
        assert HEADER.unpack(h.header) == (h.kind, h.length)
        if h.kind == Kind.UUID:
            payload = bytes.fromhex(h.payload)
            assert uuid.UUID(bytes=payload) == call
        elif h.kind == Kind.DTMF:
            payload = h.payload.encode().removeprefix(b"b'").removesuffix(b"'")
        else:
            payload = b"\x01\x00" * (h.length // 2)
        message = await read_message(_reader(h.header + payload))
        assert message is not None and message.kind == h.kind and len(message.payload) == h.length
        if h.kind == Kind.UUID:
            assert message.uuid == call
            assert uuid_message(call) == h.header + payload
        if h.kind == Kind.DTMF:
            assert message.digit == "5" and dtmf_message("5") == h.header + payload


@pytest.mark.parametrize("capture", ["app.txt", "chan.txt"])
def test_what_we_send_has_the_captured_servers_headers(capture):
    sent = {h.header for h in captured_headers(capture) if h.direction == "server -> AST"}
    assert sent == {audio_message(b"\0" * 320)[:3], HANGUP_MESSAGE}
    assert bytes.fromhex("000000") == HANGUP_MESSAGE


async def test_messages_in_a_row_and_eof_between_them():
    call = uuid.uuid4()
    reader = _reader(uuid_message(call) + audio_message(b"\x00\x01" * 160) + dtmf_message("#") + HANGUP_MESSAGE)
    kinds = []
    while (message := await read_message(reader)) is not None:
        kinds.append(message.kind)
    assert kinds == [Kind.UUID, Kind.AUDIO, Kind.DTMF, Kind.HANGUP]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x42\x00\x00", "unknown message kind 0x42"),
        (b"GET / HTTP/1.1\r\n\r\n", "unknown message kind 0x47"),
        (b"\x11\x01\x40" + b"\0" * 320, "unknown message kind 0x11"),  # 16 kHz audio: not what app_audiosocket sends
        (b"\x10\x01", "inside a header"),
        (b"\x10\x01\x40" + b"\0" * 100, "inside a AUDIO message (100 of 320 bytes)"),
        (b"\x10\xff\xff", f"AUDIO message claims 65535 bytes (at most {MAX_AUDIO_BYTES})"),
        (b"\x01\x00\x0f" + b"\0" * 15, "UUID message of 15 bytes"),
        (b"\x01\x00\x11" + b"\0" * 17, "UUID message claims 17 bytes"),
        (b"\x03\x00\x01x", "DTMF message b'x' is not one digit"),
        (b"\x03\x00\x02" + b"55", "DTMF message claims 2 bytes"),
        (b"\x10\x00\x00", "audio message of 0 bytes"),
        (b"\x10\x00\x03\0\0\0", "audio message of 3 bytes"),
        (b"\x00\x00\x05" + b"\0" * 5, "HANGUP message claims 5 bytes"),
    ],
)
async def test_bad_bytes_are_a_protocol_error_that_says_what(data, error):
    with pytest.raises(ProtocolError) as raised:
        await read_message(_reader(data))
    assert error in str(raised.value)


async def test_an_oversize_length_is_refused_before_waiting_for_its_payload():
    reader = asyncio.StreamReader()  # no EOF: reading the claimed 65535 bytes would wait forever
    reader.feed_data(b"\x10\xff\xff")
    with pytest.raises(ProtocolError, match="claims 65535"):
        await asyncio.wait_for(read_message(reader), 1)


def test_encode_refuses_what_a_16_bit_length_cannot_say():
    with pytest.raises(ValueError):
        encode(Kind.AUDIO, b"\0" * 65536)
