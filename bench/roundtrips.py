"""Count client/server round trips to PostgreSQL with a tiny TCP relay (no driver internals involved).

A round trip is counted each time the client sends after the server has answered (or first sends):
the client then waits a full network turn. Connection set-up (startup, SSL refusal, auth) counts too,
so callers take the count of an operation from the difference around it, on a warmed pool.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class RoundTripRelay:
    """Listens on 127.0.0.1:<port>, relays to ``target``; ``round_trips`` counts client turns."""

    target_host: str
    target_port: int
    round_trips: int = 0
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        # Per connection: True while the last bytes went server -> client (the client's turn ended).
        state = {"server_spoke": True}

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_client: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if from_client and state["server_spoke"]:
                        self.round_trips += 1
                        state["server_spoke"] = False
                    elif not from_client:
                        state["server_spoke"] = True
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        for coro in (pump(client_r, server_w, True), pump(server_r, client_w, False)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
