"""A small TCP proxy in front of PostgreSQL that a test can switch off, and that can lose a reply.

``down()`` resets every open connection and refuses (accepts, then resets) new ones: to the client
it looks like a database that went away. ``up()`` forwards again. ``lose_commit_reply()`` arms a
one-shot fault: the next client message containing ``COMMIT`` is forwarded to the server, and the
connection is reset before the server's reply reaches the client (the commit happened, the client
cannot know). ``lose_reply_to(marker)`` does the same for the next client message containing
``marker`` (e.g. a parameter only one statement binds: an autocommit statement commits without a
``COMMIT``); the server's whole reply, up to its ReadyForQuery (so the transaction is over), is
swallowed before the reset. ``refuse_after`` then refuses that many new connections (None: stays
down until ``up()``), so that a client's immediate retry fails too. ``reply_lost`` is set when the
fault happened (``commit_reply_lost`` is the same event).

``stall()`` makes the database hang: connections stay open and the client's messages reach the
server, but no reply comes back until ``unstall()`` (held replies are then delivered in order).
``reply_delay`` (seconds) delays every reply: a slow database. ``replies_held`` is set once a reply
is being held back by a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_bridge.db import create_engine

# PostgreSQL's ReadyForQuery message ('Z', length 5, then the transaction status byte): the server
# sends it when a query (and its implicit transaction) is over.
_READY_FOR_QUERY = b"Z\x00\x00\x00\x05"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._up = True
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._lose_marker: bytes | None = None
        self._refuse_after: int | None = 0
        self._refusals = 0  # new connections still to refuse
        self.reply_lost = asyncio.Event()
        self.commit_reply_lost = self.reply_lost
        self.refused = 0  # connections refused so far
        self.accepted = 0  # connections forwarded to the server so far
        self.reply_delay = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.replies_held = asyncio.Event()

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

    def stall(self) -> None:
        self._flowing.clear()

    def unstall(self) -> None:
        self._flowing.set()

    def lose_commit_reply(self) -> None:
        self.lose_reply_to(b"COMMIT")

    def lose_reply_to(self, marker: bytes, *, refuse_after: int | None = 0) -> None:
        self._lose_marker = marker
        self._refuse_after = refuse_after

    def _after_loss(self) -> None:
        self.reply_lost.set()
        if self._refuse_after is None:
            self._up = False
        else:
            self._refusals = self._refuse_after

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up or self._refusals:
            self._refusals = max(0, self._refusals - 1)
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        self.accepted += 1
        sent = asyncio.Event()  # the marked message went to the server: its reply is to be lost
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, sent, client_side=True),
                self._pump(up_reader, writer, link, sent, client_side=False),
            )
        finally:
            self._links.discard(link)
            _reset(writer)
            _reset(up_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link, sent: asyncio.Event,
                    *, client_side: bool) -> None:
        client, server = link
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if client_side and self._lose_marker is not None and self._lose_marker in data:
                    self._lose_marker = None
                    sent.set()
                elif not client_side and sent.is_set():
                    # The server answers the marked message: the client never hears it. Wait for the
                    # end of the reply, so that the server has finished (and committed) for sure.
                    if _READY_FOR_QUERY not in data:
                        continue
                    _reset(client)
                    _reset(server)
                    self._after_loss()
                    return
                if not client_side:
                    if not self._flowing.is_set():
                        self.replies_held.set()
                        await self._flowing.wait()
                    if self.reply_delay:
                        await asyncio.sleep(self.reply_delay)  # the slow database itself, not a test's wait
                writer.write(data)
                await writer.drain()
        _reset(client)
        _reset(server)


def _reset(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()


@contextlib.asynccontextmanager
async def proxied_engine(db_url: str) -> AsyncIterator[tuple[TcpProxy, AsyncEngine]]:
    """An engine on ``db_url``'s PostgreSQL database through a fresh proxy (skips on SQLite)."""
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("the TCP proxy stands in front of PostgreSQL")
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    engine = create_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        yield proxy, engine
    finally:
        await engine.dispose()
        await proxy.stop()
