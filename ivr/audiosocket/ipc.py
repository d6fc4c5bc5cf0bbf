"""Messages between the calls' process and its speech process (ivr/audiosocket/process.py, worker.py).

One message is a 4-byte big-endian length and a pickled tuple ``(kind, *fields)``. Pickle is safe
here: both ends are this program, connected by a socketpair the parent made for its own child;
nothing from the network is ever unpickled (Asterisk speaks to the worker's AudioSocket port, whose
reader is the strict :mod:`ivr.audiosocket.protocol`).

Kinds, calls' process → speech process:

- ``("expect", uuid, Question, language)``: a question is about to be asked over AudioSocket;
- ``("check", uuid)``: AudioSocket() returned: forget the question if Asterisk never connected for
  it; answered by ``("checked", uuid)``, after any ``connected`` for it (messages are in order);
- ``("forget", uuid)``: the call gave up on the question;
- ``("stop",)``: end (the exchanges still running are settled as failed).

Speech process → calls' process:

- ``("ready", port)``: listening on ``port``;
- ``("models", {language: state})``: the models' state changed (loaded, missing: …);
- ``("connected", uuid)``: Asterisk connected for the question;
- ``("outcome", uuid, Outcome)``: the question's answer.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

_LENGTH = struct.Struct(">I")
# A question carries its prompt's audio: a minute of slin16 is 960 KB; nothing we send is bigger.
MAX_MESSAGE = 16 * 1024 * 1024


class ChannelClosed(ConnectionError):
    """The other process closed its end (it ended, or is ending)."""


def encode(*message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if length > MAX_MESSAGE:
            raise ChannelClosed(f"speech process message of {length} bytes")
        message = pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        raise ChannelClosed("the other process closed the channel") from None
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise ChannelClosed(f"not a message: {type(message).__name__}")
    return message
