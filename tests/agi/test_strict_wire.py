"""A fake Asterisk that misbehaves on the wire (issue 9, point 5): a line that cannot be the reply to
the command in flight is a protocol error, never the caller's input, and the wire gets back in step
for the hand-over to an operator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog

from crm_bridge.contract.outcomes import Reason
from ivr.agi.channel import AgiChannel
from ivr.agi.errors import AgiCommandError, AgiHangup, AgiProtocolError
from tests.agi.conftest import Recorder
from tests.calls.harness import wait_for
from tests.fakeasterisk import NO_REPLY, FakeAsterisk

pytestmark = pytest.mark.timeout(15)

# A command timeout far above every bound asserted below: a protocol error must not wait for it.
SLOW = 10.0
PROMPT = 1.0  # what "at once" means here: well under the command timeout

LINKEDID = "200 result=1 (1795750923.1)"  # the shape of GET VARIABLE CHANNEL(linkedid)'s reply

Command = Callable[[AgiChannel], Awaitable[Any]]

COMMANDS: dict[str, Command] = {
    "ANSWER": lambda ch: ch.answer(),
    "GET VARIABLE": lambda ch: ch.get_variable("CHANNEL(linkedid)"),
    "GET FULL VARIABLE": lambda ch: ch.get_full_variable("${CALLERID(num)}"),
    "SET VARIABLE": lambda ch: ch.set_variable("IVR_STEP", "menu"),
    "EXEC": lambda ch: ch.set_variables({"IVR_A": "1", "IVR_B": "2"}),  # one EXEC MSet
    "STREAM FILE": lambda ch: ch.stream_file("greeting", "", timeout=SLOW),
    "GET DATA": lambda ch: ch.get_data("menu", 5000, 1, timeout=SLOW),
    "CHANNEL STATUS": lambda ch: ch.channel_status(),
    "VERBOSE": lambda ch: ch.verbose("hello"),
}


async def serve_one(serve, body: Command, fake: FakeAsterisk) -> tuple[Recorder, FakeAsterisk, list[dict]]:
    rec = Recorder(body)
    with structlog.testing.capture_logs() as logs:
        server = await serve(rec, command_timeout=SLOW)
        await fake.connect("127.0.0.1", server.port)
        await rec.wait(timeout=PROMPT * 3)
        assert await fake.wait_closed(PROMPT * 3)
    return rec, fake, logs


def protocol_errors(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "agi_protocol_error"]


def tracebacks(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical", "exception")]


# The fake's rule for exactly the command COMMANDS sends (not the marker or the hand-over after it).
RULES = {"GET FULL VARIABLE": "GET FULL VARIABLE ${CALLERID(num)}", "EXEC": "EXEC MSet IVR_A=1,IVR_B=2"}

# Each command against replies Asterisk never gives it (res_agi.c's handle_* forms).
WRONG_SHAPES = [
    ("ANSWER", LINKEDID),
    ("ANSWER", "200 result=0 endpos=0"),
    ("GET VARIABLE", "200 result=1"),  # no value
    ("GET VARIABLE", "200 result=2 (x)"),
    ("GET VARIABLE", "200 result=0 (x)"),
    ("GET FULL VARIABLE", "200 result=49 endpos=1200"),
    ("SET VARIABLE", "200 result=0"),
    ("SET VARIABLE", LINKEDID),
    ("EXEC", LINKEDID),
    ("EXEC", "200 result= (timeout)"),
    ("STREAM FILE", "200 result=0"),  # STREAM FILE always says endpos
    ("STREAM FILE", "200 result=49 endpos=10880"),  # stopped on "1", but no key may stop it
    ("STREAM FILE", LINKEDID),
    ("GET DATA", LINKEDID),  # the (linkedid) of issue 9: never the key "1"
    ("GET DATA", "200 result=12"),  # two keys where one was asked for
    ("GET DATA", "200 result=0 endpos=11234"),
    ("GET DATA", "200 result=1 (dtmf)"),
    ("CHANNEL STATUS", "200 result=up"),
    ("VERBOSE", "200 result=0"),
    ("VERBOSE", "300 result=1"),
    ("VERBOSE", "hello there"),
]


@pytest.mark.parametrize("command, reply", WRONG_SHAPES)
async def test_a_reply_of_the_wrong_shape_is_a_protocol_error_and_the_hand_over_still_arrives(serve, command, reply):
    async def body(ch: AgiChannel):
        with pytest.raises(AgiProtocolError):
            await COMMANDS[command](ch)
        await ch.set_variables({"IVR_RESULT": "operator", "IVR_REASON": Reason.PROTOCOL_ERROR})

    fake = FakeAsterisk({RULES.get(command, command): reply})
    rec, fake, logs = await serve_one(serve, body, fake)
    assert rec.errors == []
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "protocol_error")
    assert [e["line"] for e in protocol_errors(logs)] == [reply]
    assert tracebacks(logs) == []


@pytest.mark.parametrize("command", list(COMMANDS))
async def test_every_command_takes_its_own_well_formed_reply(serve, command):
    async def body(ch: AgiChannel):
        return await COMMANDS[command](ch)

    rec, _, logs = await serve_one(serve, body, FakeAsterisk())
    assert rec.errors == [] and protocol_errors(logs) == []


async def test_an_extra_line_before_the_get_data_reply_is_never_the_key_1(serve):
    """``200 result=1 (linkedid)`` arrives before GET DATA's own reply (the caller pressed nothing):
    GET DATA fails, and its real reply, still on the wire, is not given to the next command."""

    async def body(ch: AgiChannel):
        linkedid = await ch.get_variable("CHANNEL(linkedid)")
        with pytest.raises(AgiProtocolError):
            await ch.get_data("menu", 5000, 1, timeout=SLOW)
        await ch.set_variables({"IVR_RESULT": "operator", "IVR_REASON": Reason.PROTOCOL_ERROR})
        return linkedid, await ch.get_variable("IVR_REASON")

    fake = FakeAsterisk({"GET DATA": [LINKEDID, "200 result= (timeout)"]})
    rec, fake, logs = await serve_one(serve, body, fake)
    assert rec.results == [(fake.channel_vars["CHANNEL(linkedid)"], "protocol_error")]
    assert fake.variables["IVR_RESULT"] == "operator"
    assert len(protocol_errors(logs)) == 1 and tracebacks(logs) == []
    # Back in step: Asterisk echoed our marker after the stray reply, every later reply is its own.
    assert any(c.startswith('GET FULL VARIABLE "ivr-resync-') for c in fake.commands)


@pytest.mark.parametrize(
    "line, why",
    [
        ("garbage \x01 on the wire", "unparseable"),
        ("200 result=1", "no command was waiting"),  # a second reply to ANSWER
        ("HANGUP", None),  # Asterisk's own hang-up notice: not an error
    ],
)
async def test_a_line_while_no_command_waits(serve, line, why):
    """A line in the middle of the robot's own work (the database lookup): the next command fails at
    once instead of taking it as its reply, and the one after works."""
    sent = asyncio.Event()

    async def body(ch: AgiChannel):
        await ch.answer()
        await sent.wait()  # the reader has logged the line
        try:
            await ch.get_data("menu", 5000, 1, timeout=SLOW)
        except AgiProtocolError:
            await ch.set_variable("IVR_RESULT", "operator")
            return "operator"
        return "served"

    rec = Recorder(body)
    with structlog.testing.capture_logs() as logs:
        server = await serve(rec, command_timeout=SLOW)
        fake = await FakeAsterisk(inputs=["1"]).connect("127.0.0.1", server.port)
        await fake.wait_for_command("ANSWER")
        await fake.send_raw(line.encode() + b"\n")
        seen = "agi_protocol_error" if why else "agi_hangup_detected"
        await wait_for(lambda: any(e["event"] == seen for e in logs), PROMPT)
        sent.set()
        await rec.wait(timeout=PROMPT)
    if why is None:
        assert rec.results == ["served"] and protocol_errors(logs) == []
        return
    assert rec.results == ["operator"] and fake.variables["IVR_RESULT"] == "operator"
    assert [e["line"] for e in protocol_errors(logs)] == [line]
    assert why in protocol_errors(logs)[0]["why"]
    assert tracebacks(logs) == []


async def test_a_garbage_line_during_a_command_fails_it_at_once_not_at_its_timeout(serve):
    loop = asyncio.get_running_loop()

    async def body(ch: AgiChannel):
        started = loop.time()
        with pytest.raises(AgiProtocolError):
            await ch.get_data("menu", 5000, 1, timeout=SLOW)
        failed_after = loop.time() - started
        await ch.set_variable("IVR_RESULT", "operator")
        return failed_after

    # The garbage line comes first, then the good reply: today's 10 s of dead air.
    fake = FakeAsterisk({"GET DATA": ["\xff\xfe junk", "200 result=1"]})
    rec, fake, logs = await serve_one(serve, body, fake)
    assert rec.results[0] < PROMPT
    assert fake.variables["IVR_RESULT"] == "operator"
    assert len(protocol_errors(logs)) == 1 and tracebacks(logs) == []


async def test_multiline_520_and_511_are_still_replies(serve):
    async def body(ch: AgiChannel):
        with pytest.raises(AgiCommandError):
            await ch.execute("GET DATA")  # 520 usage block
        with pytest.raises(AgiHangup):
            await ch.channel_status()  # 511 on the dead channel
        return await ch.get_variable("CALLERID(num)")

    fake = FakeAsterisk({"CHANNEL STATUS": "511 Command Not Permitted on a dead channel or intercept routine"})
    rec, _, logs = await serve_one(serve, body, fake)
    assert rec.results == ["+79161234567"] and protocol_errors(logs) == []


async def test_the_server_hands_a_protocol_error_to_an_operator_with_its_reason(serve):
    """A handler that lets the error through (the callback script does): the server's fallback."""

    async def body(ch: AgiChannel):
        await ch.get_data("menu", 5000, 1, timeout=SLOW)

    fake = FakeAsterisk({"GET DATA": LINKEDID})
    rec, fake, logs = await serve_one(serve, body, fake)
    assert isinstance(rec.errors[0], AgiProtocolError)
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "protocol_error")
    assert len(protocol_errors(logs)) == 1 and tracebacks(logs) == []
    assert not [e for e in logs if e["event"] == "agi_handler_failed"]


async def test_a_peer_that_never_gets_back_in_step_is_closed(serve):
    """Asterisk does not echo the marker (it is not Asterisk): the hand-over gives up within the
    resync bound and the socket is closed; the dialplan's own fallback queues the caller."""

    async def body(ch: AgiChannel):
        with pytest.raises(AgiProtocolError):
            await ch.answer()
        with pytest.raises(AgiProtocolError, match="still out of step"):
            await ch.set_variable("IVR_RESULT", "operator")

    fake = FakeAsterisk({"ANSWER": LINKEDID, "GET FULL VARIABLE": NO_REPLY})
    rec, fake, logs = await serve_one(serve, body, fake)
    assert rec.errors == [] and "IVR_RESULT" not in fake.variables
    assert len(protocol_errors(logs)) == 1 and tracebacks(logs) == []
