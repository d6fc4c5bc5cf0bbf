"""Asterisk's side of ``AudioSocket(<uuid>,<host>:<port>)``, for ``ivr call`` and the tests.

What app_audiosocket.c (Asterisk 22) does once the AGI runs ``EXEC AudioSocket``: connect (a
refused or failed connect ends the application at once: ``200 result=-1``), send the UUID, then
forward the caller's audio as a 20 ms slin16 frame every 20 ms (silence too: a channel always
sends), each key as a DTMF frame, and play what the server sends; the server's hang-up message
ends the application with ``200 result=0`` and the AGI goes on. A caller who hangs up ends it
with ``200 result=-1`` (then the AGI's ``HANGUP`` line).

:func:`speech_pcm` makes the caller's words: espeak-ng, resampled to 8 kHz with soxr
(:func:`ivr.speech.audio.to_asterisk_wav`), never by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivr.audiosocket.protocol import (
    FRAME_BYTES,
    Kind,
    ProtocolError,
    audio_message,
    dtmf_message,
    read_message,
    uuid_message,
)
from ivr.speech.audio import read_pcm16, to_asterisk_wav

FRAME_SECONDS = 0.02
SILENT_FRAME = b"\0" * FRAME_BYTES


@dataclass(frozen=True)
class CallerTurn:
    """What the caller does during one AudioSocket question."""

    speech: bytes = b""  # slin16 8 kHz mono, said once
    keys: str = ""  # pressed one by one (DTMF frames), after the speech
    after_prompt: bool = False  # wait until the robot stops talking (else: speak over it, barge-in)
    hang_up_after: float | None = None  # seconds of the caller's audio, then the caller hangs up
    max_seconds: float = 60.0  # give up (hang up) if the server never ends the question


@dataclass
class LegResult:
    reply: str  # what Asterisk answers the EXEC with
    connected: bool
    server_hung_up: bool = False  # the server sent the hang-up message (the normal end)
    prompt_frames: int = 0  # audio frames the server played to the caller
    prompt_audio: bytes = b""


def parse_target(data: str) -> tuple[uuid.UUID, str, int]:
    """``<uuid>,<host>:<port>`` (AudioSocket()'s two arguments; ``[::1]:port`` for IPv6)."""
    uuid_text, _, service = data.partition(",")
    host, _, port = service.rpartition(":")
    return uuid.UUID(uuid_text.strip()), host.strip("[]"), int(port)


async def audiosocket_leg(data: str, turn: CallerTurn) -> LegResult:
    """Run one ``AudioSocket(<data>)`` as Asterisk does; see the module docstring."""
    try:
        call_uuid, host, port = parse_target(data)
    except ValueError:
        return LegResult("200 result=-1", connected=False)  # "Failed to parse UUID": the app fails
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return LegResult("200 result=-1", connected=False)  # MAX_CONNECT_TIMEOUT_MSEC is 2 s too
    result = LegResult("200 result=0", connected=True)
    talking = asyncio.Event()  # the server's audio arrived in the last 100 ms
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    last_audio = [loop.time()]
    received = bytearray()

    async def listen() -> None:
        try:
            while True:
                message = await read_message(reader)
                if message is None:
                    break
                if message.kind is Kind.HANGUP:
                    result.server_hung_up = True
                    break
                if message.kind is Kind.AUDIO:
                    result.prompt_frames += 1
                    received.extend(message.payload)
                    last_audio[0] = loop.time()
                    talking.set()
        except (ProtocolError, ConnectionError):
            pass
        finally:
            done.set()

    listener = asyncio.create_task(listen())
    try:
        writer.write(uuid_message(call_uuid))
        await writer.drain()
        await _talk(writer, turn, done, last_audio, loop)
    except ConnectionError:
        pass
    finally:
        hung_up_by_caller = not done.is_set()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    result.prompt_audio = bytes(received)
    if hung_up_by_caller and not result.server_hung_up:
        result.reply = "200 result=-1"
    return result


async def _talk(writer: asyncio.StreamWriter, turn: CallerTurn, done: asyncio.Event, last_audio: list[float],
                loop: asyncio.AbstractEventLoop) -> None:
    """The caller's frames, one every 20 ms on the loop's clock, until the server hangs up."""
    start = loop.time()
    index = 0

    async def tick() -> bool:
        nonlocal index
        index += 1
        delay = start + index * FRAME_SECONDS - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), delay)
        return not done.is_set()

    def send(frame: bytes) -> None:
        writer.write(audio_message(frame))

    # Silence while the robot talks, if the caller waits for the end of the prompt (100 ms without
    # its audio after it started, or 1 s of nothing at all).
    if turn.after_prompt:
        while (loop.time() - last_audio[0] < 0.1 or (loop.time() - start < 1.0 and last_audio[0] <= start)):
            send(SILENT_FRAME)
            if not await tick():
                return
    speech = turn.speech
    spoken = 0.0
    for offset in range(0, len(speech), FRAME_BYTES):
        frame = speech[offset : offset + FRAME_BYTES]
        send(frame + b"\0" * (FRAME_BYTES - len(frame)))
        spoken += FRAME_SECONDS
        if turn.hang_up_after is not None and spoken >= turn.hang_up_after:
            return  # mid-word: the caller is gone
        if not await tick():
            return
    for key in turn.keys:
        writer.write(dtmf_message(key))
        for _ in range(5):  # 100 ms between keys, silence meanwhile
            send(SILENT_FRAME)
            if not await tick():
                return
    while loop.time() - start < turn.max_seconds:
        send(SILENT_FRAME)
        if turn.hang_up_after is not None and loop.time() - start >= turn.hang_up_after:
            return
        if not await tick():
            return


def speech_pcm(text: str, voice: str = "ru") -> bytes:
    """``text`` said by espeak-ng as AudioSocket carries it: slin16 mono 8 kHz (soxr), no header."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True,
                         timeout=30).stdout
    return wav_pcm(to_asterisk_wav(wav))


def wav_file_pcm(path: Path) -> bytes:
    """A WAV file of any rate and channels, as AudioSocket carries it (soxr resampling)."""
    return wav_pcm(to_asterisk_wav(path.read_bytes()))


def wav_pcm(asterisk_wav: bytes) -> bytes:
    samples, rate = read_pcm16(asterisk_wav)
    if rate != 8000:
        raise ValueError(f"expected 8 kHz audio, got {rate} Hz")
    return np.clip(np.rint(samples[:, 0] * 32768.0), -32768, 32767).astype("<i2").tobytes()
