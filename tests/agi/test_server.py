"""FastAgiServer robustness over real TCP: bad peers, routing, failures, load."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import structlog

from ivr.agi.channel import AgiChannel
from tests.agi.conftest import Recorder
from tests.agi.test_env import FULL_ENV
from tests.fakeasterisk import FakeAsterisk

pytestmark = pytest.mark.timeout(30)


async def simple(ch: AgiChannel) -> None:
    await ch.answer()
    await ch.set_variable("IVR_RESULT", "done")


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> bytes:
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def normal_call(port: int, **kw) -> FakeAsterisk:
    fake = await FakeAsterisk().connect("127.0.0.1", port, **kw)
    assert await fake.wait_closed(3)
    return fake


async def test_port_zero_binds_a_real_port(serve):
    server = await serve(simple)
    assert server.port > 0
    fake = await normal_call(server.port)
    assert fake.commands == ["ANSWER", 'SET VARIABLE "IVR_RESULT" "done"']
    assert fake.variables == {"IVR_RESULT": "done"}


async def test_server_closes_socket_right_after_handler_returns(serve):
    async def nothing(ch: AgiChannel) -> None:
        return None

    server = await serve(nothing)
    fake = await FakeAsterisk().connect("127.0.0.1", server.port)
    assert await fake.wait_closed(1)
    assert fake.open_duration < 0.3
    assert fake.commands == []  # close_early.txt: no command at all


async def test_peer_connects_and_closes_at_once(serve):
    server = await serve(simple)
    for _ in range(20):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
    # a reset too
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    fake = await normal_call(server.port)
    assert fake.variables["IVR_RESULT"] == "done"
    await asyncio.sleep(0.1)
    assert server.active_calls == 0


async def test_unfinished_env_is_closed_after_env_timeout_while_other_calls_proceed(serve):
    server = await serve(simple, env_timeout=0.6)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(FULL_ENV[:300])  # never the blank line
    started = loop.time()
    closed = asyncio.create_task(read_until_closed(reader, 3))

    t0 = loop.time()
    fake = await normal_call(server.port)
    assert loop.time() - t0 < 0.3, "a slow peer must not block other calls"
    assert fake.variables["IVR_RESULT"] == "done"

    assert await closed == b""  # nothing sent to a peer without an env
    assert 0.5 <= loop.time() - started < 1.5
    writer.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\xfe\xfd" * 100 + b"\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"x" * 200_000,  # overlong, no newline at all
        b"agi_network: " + b"y" * 20_000 + b"\n\n",
        b"".join(b"agi_k%d: v\n" % i for i in range(5000)),
    ],
)
async def test_garbage_is_closed_without_crash(serve, garbage):
    server = await serve(simple, env_timeout=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(garbage)
    # closed with our junk unread: a reset is as good as a clean close
    with contextlib.suppress(ConnectionResetError):
        assert await read_until_closed(reader, 2) == b""
    writer.close()
    fake = await normal_call(server.port)
    assert fake.variables["IVR_RESULT"] == "done"


async def test_bad_peers_do_not_spin_the_loop(serve):
    server = await serve(simple, env_timeout=0.5)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker():
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    writers = []
    for i in range(30):
        _, w = await asyncio.open_connection("127.0.0.1", server.port)
        if i % 3 == 0:
            w.close()  # connect and close before the blank line
        elif i % 3 == 1:
            w.write(FULL_ENV[:100])
            w.write_eof()  # half-close mid env
        else:
            w.write(FULL_ENV[:100])  # slowloris
        writers.append(w)
    await asyncio.sleep(0.8)
    stop.set()
    await tick
    assert max(gaps) < 0.2
    assert server.active_calls == 0
    for w in writers:
        w.close()



async def test_an_env_block_over_its_byte_bound_is_refused_in_one_line_and_closed(serve):
    """256 lines of 8 KB each used to be accepted: 2 MB held for a peer that never said who it is."""
    server = await serve(simple, env_timeout=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    line = b"agi_arg_1: " + b"x" * 8000 + b"\n"
    with structlog.testing.capture_logs() as logs:
        writer.write(line * 255)  # within the old line count and line length
        with contextlib.suppress(ConnectionResetError):
            assert await read_until_closed(reader, 2) == b""
    writer.close()
    refused = [e for e in logs if e["event"] == "agi_env_rejected"]
    assert len(refused) == 1 and "longer than 32768 bytes" in refused[0]["reason"]
    assert server.active_calls == 0  # counted down before the socket was closed
    fake = await normal_call(server.port)
    assert fake.variables["IVR_RESULT"] == "done"


async def test_a_peer_trickling_bytes_is_cut_at_env_timeout_for_the_whole_block(serve):
    """Every byte arrives long before any per-line or per-read timeout would fire; the block as a
    whole must still be finished within agi.env_timeout."""
    server = await serve(simple, env_timeout=0.4)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = loop.time()
    closed = asyncio.create_task(read_until_closed(reader, 5))

    async def trickle():  # a byte every 10 ms: the 650-byte block would take 6.5 s
        with contextlib.suppress(ConnectionError):
            for byte in FULL_ENV:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.01)

    feeder = asyncio.create_task(trickle())
    with structlog.testing.capture_logs() as logs, contextlib.suppress(ConnectionResetError):
        assert await closed == b""
    assert 0.35 <= loop.time() - started < 1.5
    feeder.cancel()
    writer.close()
    assert [e["reason"] for e in logs if e["event"] == "agi_env_rejected"][0].startswith(
        "env block not finished within 0.4s")

async def test_handler_exception_sets_operator_and_closes(serve):
    async def broken(ch: AgiChannel) -> None:
        await ch.answer()
        raise RuntimeError("bug in the flow")

    server = await serve(broken)
    fake = await normal_call(server.port)
    assert fake.variables == {"IVR_RESULT": "operator", "IVR_REASON": "handler_error"}
    other = await FakeAsterisk().connect("127.0.0.1", server.port)  # other calls unaffected
    assert await other.wait_closed(2)


async def test_unknown_script_goes_to_operator(serve):
    rec = Recorder(simple)
    server = await serve({"repeat-order": rec})
    fake = await normal_call(server.port, script="no-such-script?lang=en")
    assert fake.commands == ['EXEC "MSet" "IVR_RESULT=operator,IVR_REASON=unknown_script"']
    assert rec.calls == 0


async def test_routes_on_script_without_query(serve):
    seen = []

    async def ivr(ch: AgiChannel) -> None:
        seen.append((ch.env.script, dict(ch.env.options), ch.env.args))

    server = await serve({"ivr": ivr, "repeat-order": simple})
    await normal_call(server.port, script="ivr?scenario=full&lang=ru&x=a%20b", args=("first arg", "b"))
    assert seen == [("ivr", {"scenario": "full", "lang": "ru", "x": "a b"}, ("first arg", "b"))]


async def test_overload_goes_to_operator(serve):
    release = asyncio.Event()

    async def busy(ch: AgiChannel) -> None:
        await ch.answer()
        await release.wait()

    server = await serve(busy, max_connections=1)
    first = await FakeAsterisk().connect("127.0.0.1", server.port)
    await first.wait_for_command("ANSWER")
    second = await normal_call(server.port)
    assert second.variables == {"IVR_RESULT": "operator", "IVR_REASON": "overloaded"}
    assert server.active_calls == 1
    release.set()
    assert await first.wait_closed(2)


async def test_handler_hangup_error_closes_quietly(serve):
    async def body(ch: AgiChannel) -> None:
        await ch.answer()
        await ch.stream_file("greeting", "12", timeout=2)

    server = await serve(body)
    fake = FakeAsterisk().hangup_at("STREAM FILE")
    await fake.connect("127.0.0.1", server.port)
    assert await fake.wait_closed(2)
    assert "IVR_RESULT" not in fake.variables
    assert fake.commands == ["ANSWER", 'STREAM FILE "greeting" "12"', "CHANNEL STATUS"]


async def test_handler_ignoring_hangup_is_cancelled_after_grace(serve):
    async def stubborn(ch: AgiChannel) -> None:
        await ch.answer()
        await asyncio.sleep(60)

    server = await serve(stubborn, hangup_grace=0.2)
    fake = await FakeAsterisk().connect("127.0.0.1", server.port)
    await fake.wait_for_command("ANSWER")
    await fake.hangup()
    assert await fake.wait_closed(1.5)


async def test_connection_lost_while_idle_does_not_leak(serve):
    async def body(ch: AgiChannel) -> None:
        await ch.answer()
        await ch.hangup_event.wait()
        assert ch.connection_lost

    rec = Recorder(body)
    server = await serve(rec)
    fake = await FakeAsterisk().connect("127.0.0.1", server.port)
    await fake.wait_for_command("ANSWER")
    await fake.close()
    await rec.wait(2)
    assert rec.errors == []
    await asyncio.sleep(0.05)
    assert server.active_calls == 0


async def test_stop_lets_calls_finish_then_cancels(serve):
    async def slow(ch: AgiChannel) -> None:
        await ch.answer()
        await asyncio.sleep(0.1)
        await ch.set_variable("IVR_RESULT", "done")

    async def endless(ch: AgiChannel) -> None:
        await ch.answer()
        await asyncio.sleep(60)

    server = await serve({"slow": slow, "endless": endless})
    a = await FakeAsterisk().connect("127.0.0.1", server.port, script="slow")
    b = await FakeAsterisk().connect("127.0.0.1", server.port, script="endless")
    await a.wait_for_command("ANSWER")
    await b.wait_for_command("ANSWER")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await server.stop(grace=0.5)
    assert loop.time() - t0 < 2.0
    assert a.variables["IVR_RESULT"] == "done"
    assert await a.wait_closed(0.5) and await b.wait_closed(0.5)
    assert server.active_calls == 0
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


@pytest.mark.timeout(60)
async def test_200_concurrent_sessions(serve):
    async def flow(ch: AgiChannel) -> None:
        await ch.answer()
        num = await ch.get_variable("CALLERID(num)")
        key = await ch.stream_file("greeting", "12", timeout=5)
        data = await ch.get_data("enter-code", 3000, 4, timeout=5)
        await ch.set_variable("IVR_RESULT", f"{num}|{key}|{data.digits}")

    server = await serve(flow, command_timeout=10)
    fakes = [FakeAsterisk(inputs=[str(1 + i % 2), f"{i:04d}"]) for i in range(200)]
    await asyncio.gather(
        *(f.connect("127.0.0.1", server.port, caller_id=f"+7916{i:07d}") for i, f in enumerate(fakes))
    )
    closed = await asyncio.gather(*(f.wait_closed(20) for f in fakes))
    assert all(closed)
    for i, f in enumerate(fakes):
        assert f.variables["IVR_RESULT"] == f"+7916{i:07d}|{1 + i % 2}|{i:04d}"
    await asyncio.sleep(0.05)
    assert server.active_calls == 0


async def test_plain_function_route_and_stdlib_logger(serve):
    import logging

    calls = []

    def plain(ch: AgiChannel) -> None:
        calls.append(ch.env.script)

    def plain_broken(ch: AgiChannel) -> None:
        raise ValueError("oops")

    server = await serve({"plain": plain, "broken": plain_broken}, logger=logging.getLogger("test.agi"))
    fake = await normal_call(server.port, script="plain")
    assert calls == ["plain"] and fake.commands == []
    fake = await normal_call(server.port, script="broken")
    assert fake.variables == {"IVR_RESULT": "operator", "IVR_REASON": "handler_error"}


@pytest.mark.parametrize(
    "raw, name",
    [("Иван Петров".encode("cp1251"), "Иван Петров"), ("José Müller".encode("latin-1"), "José Müller")],
)
async def test_a_call_with_a_non_utf8_caller_name_is_served_and_its_bytes_logged_once(serve, raw, name):
    rec = Recorder(lambda ch: simple(ch))
    with structlog.testing.capture_logs() as logs:
        server = await serve(rec)
        fake = await normal_call(server.port, caller_name=raw)
    assert rec.errors == [] and fake.variables["IVR_RESULT"] == "done"
    assert rec.channels[0].env.caller_name == name
    lines = [e for e in logs if e["event"] == "agi_env_not_utf8"]
    assert [(e["values"], e["decoded"]) for e in lines] == [({"calleridname": raw.hex(" ")}, {"calleridname": name})]
    assert lines[0]["log_level"] == "info"
    assert not [e for e in logs if e["event"] == "agi_env_rejected"]
