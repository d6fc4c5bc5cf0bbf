"""AgiChannel against FakeAsterisk over real TCP, with the traces' reply shapes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.agi.channel import AgiChannel, GetDataResult
from ivr.agi.errors import (
    AgiCommandError,
    AgiConnectionLost,
    AgiHangup,
    AgiPlaybackFailed,
    AgiTimeout,
)
from tests.agi.conftest import Recorder
from tests.fakeasterisk import CLOSE, HANGUP, NO_REPLY, TIMEOUT, FakeAsterisk

pytestmark = pytest.mark.timeout(15)

TRICKY = {
    "IVR_NOTE": 'he said "hi" \\o/ ok',
    "IVR_PAREN": "a (b) c)",
    "IVR_NAME_RU": "Иван Петров",
    "IVR_EMPTY": "",
    "IVR_TWO_WORDS": "hello world",
}


async def run_call(serve, body, fake: FakeAsterisk | None = None, **connect_kw) -> tuple[Recorder, FakeAsterisk]:
    rec = Recorder(body)
    server = await serve(rec)
    fake = fake or FakeAsterisk()
    await fake.connect("127.0.0.1", server.port, **connect_kw)
    await rec.wait()
    assert await fake.wait_closed(3), "server must close the socket after the handler"
    return rec, fake


async def test_variables_round_trip_with_tricky_values(serve):
    async def body(ch: AgiChannel):
        await ch.answer()
        got = {"num": await ch.get_variable("CALLERID(num)"), "unset": await ch.get_variable("IVR_NOT_SET")}
        got["full"] = await ch.get_full_variable("${CALLERID(name)} <${CALLERID(num)}>")
        for name, value in TRICKY.items():
            await ch.set_variable(name, value)
            got[name] = await ch.get_variable(name)
        got["status"] = await ch.channel_status()
        await ch.verbose('IVR: escalating "caller" to operator')
        return got

    rec, fake = await run_call(serve, body)
    got = rec.results[0]
    assert got["num"] == "+79161234567"
    assert got["unset"] is None
    assert got["full"] == "Ivan Petrov <+79161234567>"
    for name, value in TRICKY.items():
        assert got[name] == value
        assert fake.variables[name] == value
    assert got["IVR_EMPTY"] == ""
    assert got["status"] == 6
    assert fake.commands[0] == "ANSWER"
    assert 'SET VARIABLE "IVR_NOTE" "he said \\"hi\\" \\\\o/ ok"' in fake.commands
    assert 'VERBOSE "IVR: escalating \\"caller\\" to operator" "1"' in fake.commands


async def test_stream_file_and_get_data_inputs(serve):
    async def body(ch: AgiChannel):
        return [
            await ch.stream_file("/var/lib/asterisk/sounds/ivr/greeting", "12", timeout=2),
            await ch.stream_file("hello-world", "12", timeout=2),
            await ch.stream_file("hello-world", "", timeout=2),
            await ch.get_data("enter-code", 5000, 4, timeout=2),
            await ch.get_data("beep", 3000, 4, timeout=2),
            await ch.get_data("beep", 2000, 4, timeout=2),
            await ch.get_data("beep", 2500, 4, timeout=2),
        ]

    fake = FakeAsterisk(inputs=["1", TIMEOUT, "4711", "12#", TIMEOUT, "9"])
    rec, fake = await run_call(serve, body, fake)
    assert rec.results[0] == [
        "1",
        None,
        None,
        GetDataResult("4711", False),
        GetDataResult("12", False),
        GetDataResult("", True),
        GetDataResult("9", True),
    ]
    assert fake.commands[0] == 'STREAM FILE "/var/lib/asterisk/sounds/ivr/greeting" "12"'
    assert fake.commands[3] == 'GET DATA "enter-code" "5000" "4"'
    assert fake.sent[:2] == ["200 result=49 endpos=10880", "200 result=0 endpos=11234"]
    assert "200 result= (timeout)" in fake.sent and "200 result=9 (timeout)" in fake.sent


async def test_hangup_at_idle_is_detected_at_once(serve):
    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}

    async def body(ch: AgiChannel):
        await ch.answer()
        await ch.hangup_event.wait()  # "looking up the CRM" while no command is in flight
        seen["at"] = loop.time()
        assert ch.hung_up and not ch.connection_lost
        return await ch.get_variable("CALLERID(num)")  # still answered after hang-up (hangup_idle.txt)

    rec = Recorder(body)
    server = await serve(rec)
    fake = await FakeAsterisk().connect("127.0.0.1", server.port)
    await fake.wait_for_command("ANSWER")
    await asyncio.sleep(0.05)
    sent_at = loop.time()
    await fake.hangup()
    await rec.wait()
    assert seen["at"] - sent_at < 0.05
    assert rec.results == ["+79161234567"]
    assert await fake.wait_closed(2)


@pytest.mark.parametrize("command", ["GET DATA", "STREAM FILE"])
async def test_result_minus_one_then_hangup_then_511(serve, command):
    async def body(ch: AgiChannel):
        await ch.answer()
        if command == "GET DATA":
            await ch.get_data("/var/lib/asterisk/sounds/ivr/enter-code", 10000, 4, timeout=2)
        else:
            await ch.stream_file("/var/lib/asterisk/sounds/ivr/greeting", "12", timeout=2)

    fake = FakeAsterisk().hangup_at(command)
    rec, fake = await run_call(serve, body, fake)
    assert isinstance(rec.errors[0], AgiHangup) and not isinstance(rec.errors[0], AgiPlaybackFailed)
    assert fake.commands[-1] == "CHANNEL STATUS"
    assert fake.sent[1].startswith("200 result=-1")
    assert fake.sent[2:] == ["HANGUP", "511 Command Not Permitted on a dead channel or intercept routine"]
    assert rec.channels[0].hung_up


async def test_hangup_line_just_before_the_reply_does_not_desync(serve):
    async def body(ch: AgiChannel):
        await ch.answer()
        first = await ch.get_variable("CALLERID(num)")
        hung = ch.hung_up
        second = await ch.get_variable("IVR_X")
        await ch.set_variable("IVR_RESULT", "hungup")  # not refused locally after hang-up
        return first, hung, second

    fake = FakeAsterisk(
        replies={"GET VARIABLE CALLERID(num)": ["HANGUP", "200 result=1 (+79161234567)"]},
        variables={"IVR_X": "x"},
    )
    rec, fake = await run_call(serve, body, fake)
    assert rec.results == [("+79161234567", True, "x")]
    assert fake.variables["IVR_RESULT"] == "hungup"


async def test_trace_hangup_getdata_sequence(serve):
    """hangup_getdata.txt: -1, GET VARIABLE gets HANGUP then its reply, 511 on STREAM FILE, 200 on EXEC."""

    async def body(ch: AgiChannel):
        await ch.answer()
        reply = await ch.execute("GET DATA", "/var/lib/asterisk/sounds/ivr/enter-code", "10000", "4")
        assert reply.result == "-1"
        num = await ch.get_variable("CALLERID(num)")
        with pytest.raises(AgiHangup):
            await ch.stream_file("beep", "", timeout=2)
        await ch.execute("EXEC", "Playback", "beep")
        await ch.verbose("after hangup")
        await ch.set_variable("IVR_RESULT", "hungup")
        with pytest.raises(AgiHangup):
            await ch.channel_status()
        with pytest.raises(AgiCommandError) as err:
            await ch.execute("FOO BAR")
        assert err.value.code == 510
        await ch.hangup()  # already gone: not an error
        return num

    fake = FakeAsterisk(hangup_line_delay=5.0).hangup_at("GET DATA")
    rec, fake = await run_call(serve, body, fake)
    assert rec.errors == [] and rec.results == ["+79161234567"]
    assert fake.sent[1:4] == ["200 result=-1", "HANGUP", "200 result=1 (+79161234567)"]


async def test_multiline_520_then_next_command_works(serve):
    async def body(ch: AgiChannel):
        errors = []
        for args in (("SET VARIABLE", "IVR_TWO_WORDS", "hello", "world"), ("STREAM FILE",), ("GET DATA",)):
            with pytest.raises(AgiCommandError) as err:
                await ch.execute(*args)
            errors.append(err.value)
        return errors, await ch.get_variable("CALLERID(num)")

    rec, fake = await run_call(serve, body)
    errors, num = rec.results[0]
    assert [e.code for e in errors] == [520, 520, 520]
    assert errors[0].usage == "Sets a variable to the current channel."
    assert errors[1].usage.startswith("Send the given file") and errors[1].usage.endswith("<value>FAILED</value>")
    assert len(errors[1].usage.split("\n")) == 5
    assert "receive DTMF data" in errors[2].usage
    assert num == "+79161234567"


async def test_510_unknown_command(serve):
    async def body(ch: AgiChannel):
        with pytest.raises(AgiCommandError) as err:
            await ch.execute("FOO BAR")
        return err.value.code, await ch.channel_status()

    rec, _ = await run_call(serve, body)
    assert rec.results == [(510, 6)]


async def test_missing_file_on_live_channel_is_playback_failure(serve, tmp_path: Path):
    (tmp_path / "present.wav").write_bytes(b"RIFF")

    async def body(ch: AgiChannel):
        ok = await ch.stream_file(str(tmp_path / "present"), "1", timeout=2)
        with pytest.raises(AgiPlaybackFailed) as err:
            await ch.stream_file(str(tmp_path / "absent"), "1", timeout=2)
        with pytest.raises(AgiPlaybackFailed):
            await ch.get_data(str(tmp_path / "absent"), 1000, 4, timeout=2)
        return ok, err.value.path, ch.hung_up

    fake = FakeAsterisk(check_files=True)
    rec, fake = await run_call(serve, body, fake)
    assert rec.results == [(None, str(tmp_path / "absent"), False)]
    assert "200 result=-1 endpos=0" in fake.sent
    assert fake.commands.count("CHANNEL STATUS") == 2


async def test_reply_timeout_then_late_reply_is_not_given_to_the_next_command(serve):
    async def slow(cmd):
        await asyncio.sleep(0.3)
        return "200 result=1 (late)"

    async def body(ch: AgiChannel):
        with pytest.raises(AgiTimeout):
            await ch.execute("GET VARIABLE", "SLOW", timeout=0.1)
        return await ch.get_variable("CALLERID(num)")

    fake = FakeAsterisk(replies={"GET VARIABLE SLOW": slow})
    rec, _ = await run_call(serve, body, fake)
    assert rec.results == ["+79161234567"]


async def test_command_timeout_default(serve):
    async def body(ch: AgiChannel):
        with pytest.raises(AgiTimeout):
            await ch.answer()
        return True

    fake = FakeAsterisk(replies={"ANSWER": NO_REPLY})
    rec = Recorder(body)
    server = await serve(rec, command_timeout=0.2)
    await fake.connect("127.0.0.1", server.port)
    await rec.wait()
    assert rec.results == [True]


async def test_socket_closed_mid_command_is_connection_lost_and_server_still_serves(serve):
    async def body(ch: AgiChannel):
        await ch.answer()
        try:
            await ch.stream_file("greeting", "12", timeout=2)
        except AgiConnectionLost:
            assert ch.connection_lost and ch.hung_up and ch.hangup_event.is_set()
            with pytest.raises(AgiConnectionLost):
                await ch.answer()
            return "lost"
        return "played"

    rec = Recorder(body)
    server = await serve(rec)
    first = await FakeAsterisk(replies={"STREAM FILE": CLOSE}).connect("127.0.0.1", server.port)
    await rec.wait()
    assert rec.results == ["lost"]
    rec.done.clear()
    second = await FakeAsterisk().connect("127.0.0.1", server.port)
    await rec.wait()
    assert rec.results == ["lost", "played"]
    assert await second.wait_closed(2)
    assert not first.closed_by_server
    await asyncio.sleep(0.05)
    assert server.active_calls == 0


async def test_caller_hangs_up_during_input_via_inputs_script(serve):
    async def body(ch: AgiChannel):
        await ch.stream_file("greeting", "12", timeout=2)
        await ch.get_data("enter-code", 5000, 4, timeout=2)

    fake = FakeAsterisk(inputs=[TIMEOUT, HANGUP])
    rec, fake = await run_call(serve, body, fake)
    assert isinstance(rec.errors[0], AgiHangup)


async def test_newline_argument_is_refused_before_sending(serve):
    async def body(ch: AgiChannel):
        with pytest.raises(ValueError):
            await ch.set_variable("IVR_X", "a\nHANGUP")
        return list(ch.env.args)

    rec, fake = await run_call(serve, body, args=("first arg",))
    assert fake.commands == []
    assert rec.results == [["first arg"]]


async def test_close_is_idempotent_and_prompt(serve):
    async def body(ch: AgiChannel):
        await ch.close()
        await ch.close()
        with pytest.raises(AgiConnectionLost):
            await ch.answer()
        return True

    rec, fake = await run_call(serve, body)
    assert rec.results == [True]
    assert fake.open_duration is not None and fake.open_duration < 1.0


async def test_our_own_close_is_not_a_caller_hangup(serve):
    """Bookkeeping after we close must not be cut short by the server's hang-up watchdog."""

    async def body(ch: AgiChannel):
        await ch.answer()
        await ch.close()
        await asyncio.sleep(0.05)  # let the reader task finish
        return (ch.hung_up, ch.hangup_event.is_set(), ch.connection_lost)

    rec, _fake = await run_call(serve, body)
    assert rec.results == [(False, False, True)]


HAND_OVER = {"IVR_RESULT": "done", "IVR_REASON": "order_placed", "IVR_LANGUAGE": "ru", "IVR_ORDER_ID": "А-1001"}


async def test_plain_variables_go_in_one_mset(serve):
    async def body(ch: AgiChannel):
        await ch.set_variables(HAND_OVER)

    _, fake = await run_call(serve, body)
    pairs = "IVR_RESULT=done,IVR_REASON=order_placed,IVR_LANGUAGE=ru,IVR_ORDER_ID=А-1001"
    assert fake.commands == [f'EXEC "MSet" "{pairs}"']
    assert fake.variables == HAND_OVER


@pytest.mark.parametrize("odd", ["a,b", "x=y", 'say "hi"', "two words", "back\\slash", "${CALLERID(num)}"])
async def test_a_value_mset_would_split_goes_one_by_one(serve, odd):
    values = {"IVR_RESULT": "operator", "IVR_NOTE": odd}

    async def body(ch: AgiChannel):
        await ch.set_variables(values)

    _, fake = await run_call(serve, body)
    assert [c.split()[0:2] for c in fake.commands] == [["SET", "VARIABLE"]] * 2
    assert fake.variables == values


async def test_without_mset_the_values_still_arrive(serve):
    """An Asterisk without the application answers EXEC with result=-2: fall back, lose nothing."""

    async def body(ch: AgiChannel):
        await ch.set_variables(HAND_OVER)

    _, fake = await run_call(serve, body, FakeAsterisk(replies={"EXEC MSet": "200 result=-2"}))
    assert fake.commands[0].startswith('EXEC "MSet"')
    assert [c.split()[0:2] for c in fake.commands[1:]] == [["SET", "VARIABLE"]] * 4
    assert fake.variables == HAND_OVER


async def test_after_a_hangup_variables_go_one_by_one(serve):
    """The traces prove SET VARIABLE on a dead channel; MSet is not risked there."""
    hung = asyncio.Event()

    async def body(ch: AgiChannel):
        await ch.answer()
        await asyncio.wait_for(ch.hangup_event.wait(), 5)
        hung.set()
        await ch.set_variables(HAND_OVER)

    fake = FakeAsterisk()
    rec = Recorder(body)
    server = await serve(rec)
    await fake.connect("127.0.0.1", server.port)
    await fake.wait_for_command("ANSWER")
    await fake.hangup()
    await rec.wait()
    assert hung.is_set()
    assert [c.split()[0:2] for c in fake.commands[1:]] == [["SET", "VARIABLE"]] * 4
    assert fake.variables == HAND_OVER
