"""A small TCP proxy in front of PostgreSQL that a test can switch off, and that can lose a reply.

``down()`` resets every open connection and refuses (accepts, then resets) new ones: to the client
it looks like a database that went away. ``up()`` forwards again. ``lose_commit_reply()`` arms a
one-shot fault: the next client message containing ``COMMIT`` is forwarded to the server, and the
connection is reset before the server's reply reaches the client (the commit happened, the client
cannot know). ``commit_reply_lost`` is set when that happened.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._up = True
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._lose_commit_reply = False
        self.commit_reply_lost = asyncio.Event()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        self._up = False
        for client, server in list(self._links):
            _reset(client)
            _reset(server)
        self._links.clear()

    def up(self) -> None:
        self._up = True

    def lose_commit_reply(self) -> None:
        self._lose_commit_reply = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        commit_sent = asyncio.Event()
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, commit_sent, client_side=True),
                self._pump(up_reader, writer, link, commit_sent, client_side=False),
            )
        finally:
            self._links.discard(link)
            _reset(writer)
            _reset(up_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link, commit_sent: asyncio.Event,
                    *, client_side: bool) -> None:
        client, server = link
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if client_side and self._lose_commit_reply and b"COMMIT" in data:
                    self._lose_commit_reply = False
                    commit_sent.set()
                elif not client_side and commit_sent.is_set():
                    # The server answered the COMMIT: the client never hears it.
                    _reset(client)
                    _reset(server)
                    self.commit_reply_lost.set()
                    return
                writer.write(data)
                await writer.drain()
        _reset(client)
        _reset(server)


def _reset(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
