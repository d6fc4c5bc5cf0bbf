"""`ivr call` (the softphone) against a real service started by the composition root.

``start_service`` wires everything as ``ivr serve`` does: SQLite under tmp_path with the demo data,
espeak-ng prompts, FastAGI and the read API on free ports.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
from pathlib import Path

import aiohttp
import pytest

from crm_bridge.demo import load_demo_data
from ivr.agi.softphone import place_call
from ivr.app import start_service
from ivr.settings import load_settings
from tests.calls.harness import wait_for

TOKEN = "cli-t0ken"


@pytest.fixture(scope="session")
def shared_prompts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-prompts")  # each phrase is synthesized once per run


@pytest.fixture
async def service(tmp_path, shared_prompts):
    settings = load_settings(environ={}).replace(
        agi={"host": "127.0.0.1", "port": 0},
        web={"host": "127.0.0.1", "port": 0, "api_token": TOKEN, "enabled": True},
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3"},
        prompts={"dir": str(shared_prompts), "warm_at_start": False, "text_sidecars": True},
        # operators always on duty: what a caller hears must not depend on the hour the tests run
        hours={"open": "00:00", "close": "23:59:59.999999", "days": "1,2,3,4,5,6,7", "holidays": ""},
        flow={"max_silence": 10.0},  # a loaded machine's first syntheses must not hand the caller over
    )
    svc = await start_service(settings)
    try:
        assert (await load_demo_data(svc.store)).ok
        yield svc
    finally:
        await svc.stop()


async def call(service, number: str, keys: list[str], script: str = "repeat-order"):
    out = io.StringIO()
    result = await place_call(
        host="127.0.0.1", port=service.agi.port, script=script, caller_id=number, answers=keys, out=out,
        idle_limit=20.0,
    )
    return result, out.getvalue()


async def api(service, path: str):
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{service.web_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
    ):
        assert resp.status == 200
        return await resp.json()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_known_caller_repeats_the_last_order(service):
    result, out = await call(service, "+79161234567", ["1"])
    assert result.completed
    assert result.variables["IVR_RESULT"] == "done"
    assert result.variables["IVR_REASON"] == "order_placed"
    assert result.variables["IVR_CUSTOMER_ID"] == "C001"
    order_id = result.variables["IVR_ORDER_ID"]
    assert order_id.startswith("A-")

    lines = out.splitlines()
    assert lines[0] == f"calling 127.0.0.1:{service.agi.port}/repeat-order as +79161234567"
    assert lines[1].startswith("  robot: Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки воды")
    assert "нажмите 1" in lines[1]
    assert lines[2] == "  caller: 1"
    readback = lines[3]
    assert readback.startswith("  robot: Заказ номер А ")
    assert order_id.removeprefix("A-") in readback
    assert "одна тысяча четыреста рублей" in readback and "Доставка" in readback
    summary, _, route = lines[-1].removeprefix("result: ").partition(" -> ")
    assert lines[-1].startswith("result: ") and route == "dialplan: Hangup()"
    shown = dict(pair.split("=", 1) for pair in summary.split())
    # every IVR_ variable handed to the dialplan, as set
    assert shown == {k: v for k, v in result.variables.items() if k.startswith("IVR_")}
    assert {"IVR_CUSTOMER_ID": "C001", "IVR_ORDER_ID": order_id, "IVR_REASON": "order_placed",
            "IVR_RESULT": "done"}.items() <= shown.items()
    assert summary.split() == sorted(summary.split())
    assert result.prompts[0] == lines[1].removeprefix("  robot: ")

    # the service recorded it: the read API of the same service shows the call and the order
    # (the call row is closed just after the server hangs up, so wait for its outcome)
    async def ended_calls():
        calls = (await api(service, "/api/v1/calls"))["calls"]
        return calls if calls and all(c["outcome"] for c in calls) else None

    calls = await wait_for(ended_calls)
    assert [(c["customer_id"], c["order_id"], c["outcome"]) for c in calls] == [("C001", order_id, "order_placed")]
    card = await api(service, "/api/v1/customers/C001")
    assert card["orders"][0]["order_id"] == order_id and card["orders"][0]["invoice"]["total"] == "1400.00"


async def test_unknown_number_goes_to_the_operator(service):
    result, out = await call(service, "+79990000000", [])
    assert result.completed
    assert result.variables["IVR_RESULT"] == "operator"
    assert result.variables["IVR_REASON"] == "unknown_number"
    assert "IVR_ORDER_ID" not in result.variables
    assert "IVR_RESULT=operator" in out
    assert out.rstrip().endswith("-> dialplan: Queue(operators)")
    assert "Алексей" not in out


async def test_withheld_number_goes_to_the_operator(service):
    result, out = await call(service, "", [])
    assert (result.variables["IVR_RESULT"], result.variables["IVR_REASON"]) == ("operator", "no_caller_id")
    assert "as withheld number" in out.splitlines()[0]


async def test_change_quantities_in_english(service):
    # C003 John Smith speaks English; his last order is 3 × WATER-19: change it to 5 and confirm
    result, out = await call(service, "+79265554433", ["2", "5#", "1"], script="repeat-order?lang=en")
    assert result.variables["IVR_RESULT"] == "done", out
    assert "Hello" in result.prompts[0] or "John" in result.prompts[0]
    card = await api(service, "/api/v1/customers/C003")
    newest = card["orders"][0]
    assert newest["order_id"] == result.variables["IVR_ORDER_ID"]
    assert [(line["sku"], line["quantity"]) for line in newest["lines"]] == [("WATER-19", 5)]


async def test_two_calls_in_the_same_second_are_two_calls(service):
    # Each softphone call is a new Asterisk channel: a new linkedid, hence a new order
    first, _ = await call(service, "+79161234567", ["1"])
    second, _ = await call(service, "+79161234567", ["1"])
    assert first.variables["IVR_RESULT"] == second.variables["IVR_RESULT"] == "done"
    assert first.variables["IVR_ORDER_ID"] != second.variables["IVR_ORDER_ID"]

    async def both_listed():  # call rows are written by the record writer, just after the calls
        calls = (await api(service, "/api/v1/calls"))["calls"]
        return calls if len(calls) >= 2 else None

    calls = await wait_for(both_listed)
    assert len(calls) == 2 and len({c["call_id"] for c in calls}) == 2


async def test_nothing_listening_is_a_clear_message():
    port = free_port()
    out = io.StringIO()
    result = await place_call(host="127.0.0.1", port=port, script="repeat-order", caller_id="+79161234567",
                              answers=["1"], out=out)
    assert result.completed is False
    assert result.variables == {} and result.prompts == []
    text = out.getvalue()
    assert f"cannot reach the FastAGI server at 127.0.0.1:{port}" in text
    assert "queue the caller" in text
    assert "Traceback" not in text


async def test_a_connection_reset_mid_call_is_a_clear_message():
    """A server that dies after its first command: RST instead of a goodbye."""

    async def dying(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass  # the env block
        writer.write(b"ANSWER\n")
        await writer.drain()
        await reader.readline()  # the reply
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()

    server = await asyncio.start_server(dying, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        out = io.StringIO()
        result = await place_call(host="127.0.0.1", port=port, script="repeat-order", caller_id="+79161234567",
                                  answers=["1"], out=out, idle_limit=5.0)
    finally:
        server.close()
        await server.wait_closed()
    text = out.getvalue()
    assert result.completed is False
    assert "the connection to the FastAGI server broke" in text
    assert text.rstrip().endswith("result: IVR_RESULT unset -> dialplan: Queue(operators)")


async def test_a_call_above_capacity_goes_to_an_operator_at_once_and_is_recorded(tmp_path, shared_prompts):
    """Admission control wired by the composition root: with room for one call a second, the second
    caller of the same instant hears nothing from the robot, the dialplan queues them as overloaded,
    and the call log still has their call with its story."""
    settings = load_settings(environ={}).replace(
        agi={"host": "127.0.0.1", "port": 0, "max_call_rate": 0.001, "call_burst": 1},
        web={"host": "127.0.0.1", "port": 0, "api_token": TOKEN, "enabled": True},
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3"},
        prompts={"dir": str(shared_prompts), "warm_at_start": False},
        hours={"open": "00:00", "close": "23:59:59.999999", "days": "1,2,3,4,5,6,7", "holidays": ""},
        flow={"max_silence": 10.0},  # a loaded machine's first syntheses must not hand the caller over
    )
    svc = await start_service(settings)
    try:
        assert (await load_demo_data(svc.store)).ok
        first, _ = await call(svc, "+79161234567", ["1"])
        second, out = await call(svc, "+79031112233", ["1"])
        assert first.variables["IVR_REASON"] == "order_placed"
        assert second.variables == {"IVR_RESULT": "operator", "IVR_REASON": "overloaded"}
        assert second.prompts == []  # not a word from the robot: straight to the queue
        assert svc.agi.admission.rejected == {"call_rate": 1}

        async def refused_row():
            calls = (await api(svc, "/api/v1/calls"))["calls"]
            return [c for c in calls if c["reason"] == "overloaded"] or None

        (row,) = await wait_for(refused_row)
        assert (row["outcome"], row["caller_number"]) == ("operator", "+79031112233")
        timeline = await api(svc, f"/api/v1/calls/{row['call_id']}/timeline")
        kinds = [e["kind"] for e in timeline["events"]]
        assert kinds == ["call.started", "call.ended"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{svc.web_port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
        ):
            metrics = await resp.text()
        assert 'ivr_calls_rejected_total{cause="call_rate"} 1.0' in metrics
        assert 'ivr_calls_rejected_total{cause="loop_lag"} 0.0' in metrics
    finally:
        await svc.stop()
