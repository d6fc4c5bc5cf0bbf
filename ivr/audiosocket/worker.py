"""The speech process: the AudioSocket listener and the vosk recognizers, apart from the calls.

Started by the calls' process (:class:`ivr.audiosocket.process.SpeechProcess`) as
``python -m ivr.audiosocket.worker --fd N``; N is its end of a socketpair carrying the messages of
:mod:`ivr.audiosocket.ipc`. The first message is ``("start", SpeechSettings, log_level, log_json,
port)``; then this process runs an :class:`AudioSocketServer` exactly as the calls' process would,
and reports connections and outcomes back.

Why a process of its own: 50 callers answering by voice are ~5,000 AudioSocket messages a second
and grammar decoding worth about a core. In the calls' process they shared its event loop and its
GIL with every call's AGI, and a call's AGI turnaround went ×2.3 while 50 others spoke
(bench/speech_load.py); here they cost the calls only what the machine's CPUs share.

The process ends when its channel closes (the calls' process ended or was killed): an orphan never
keeps the AudioSocket port. It ignores SIGTERM and SIGINT: the calls' process ends it after its drain.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from collections.abc import Callable
from typing import Any

import structlog

from ivr.audiosocket import ipc
from ivr.audiosocket.server import AudioSocketServer, Pending
from ivr.logs import configure_logging
from ivr.speech.recognizer import SpeechModels

log = structlog.get_logger("ivr.speech")

# The calls' process sends a question, then runs EXEC AudioSocket; Asterisk may connect here before
# the question (a prompt's audio, up to hundreds of KB) was read off the channel: seen in the
# voice-call tests on a loaded machine. A real stray UUID is hung up after this.
EXPECT_GRACE = 1.0

Send = Callable[..., None]  # one message to the calls' process (ivr/audiosocket/ipc.py)


async def serve(channel: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    kind, settings, level, json_logs, port = await ipc.read(reader)
    assert kind == "start", kind
    configure_logging(level, json_logs)

    def send(*message: Any) -> None:
        if not writer.is_closing():
            writer.write(ipc.encode(*message))

    def on_connect(pending: Pending) -> None:
        send("connected", pending.call_uuid)

    models = SpeechModels(settings)
    server = AudioSocketServer(settings.audiosocket_host, port, models, on_connect=on_connect,
                               expect_grace=EXPECT_GRACE)
    try:
        await server.start()
    except OSError as exc:
        log.error("speech.audiosocket_unavailable: callers answer with keys",
                  address=f"{settings.audiosocket_host}:{port}", error=str(exc))
        return
    send("ready", server.port)

    async def load() -> None:
        await server.load_models()
        send("models", server.models_health())

    loading = asyncio.create_task(load(), name="speech-models")
    try:
        await _commands(reader, server, send)
    finally:
        loading.cancel()
        await server.close()
        models.close()
        writer.close()


async def _commands(reader: asyncio.StreamReader, server: AudioSocketServer, send: Send) -> None:
    def report(pending: Pending) -> None:
        send("outcome", pending.call_uuid, pending.outcome.result())

    while True:
        try:
            message = await ipc.read(reader)
        except ipc.ChannelClosed:
            return
        kind = message[0]
        if kind == "expect":
            _, call_uuid, question, language = message
            pending = server.expect(call_uuid, question, language)
            pending.outcome.add_done_callback(lambda _, p=pending: report(p))
        elif kind == "check":
            # Forgotten only if Asterisk never connected for it (a connected one is no longer waiting).
            server.forget(message[1])
            send("checked", message[1])
        elif kind == "forget":
            server.forget(message[1])
        elif kind == "stop":
            return
        else:
            log.error("speech.process_message_unknown", kind=kind)


def main() -> None:
    parser = argparse.ArgumentParser(description="ivr's speech process (started by ivr serve)")
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args()
    # The calls' process decides when this one ends (it closes the channel after its drain): a stop
    # signal sent to the whole group (systemd's stop, Ctrl-C in a terminal) must not take the voice
    # answers away from the calls still draining. If the calls' process dies, the channel closes.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=args.fd)
    asyncio.run(serve(channel))


if __name__ == "__main__":
    main()
