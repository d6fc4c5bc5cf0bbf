"""The AMI wire layer without sockets (parser, encoder) and the fake's fidelity to the real traces."""

from __future__ import annotations

import asyncio

import pytest

from ivr.ami import MessageParser, encode_action
from tests.fakeami import (
    TRACES,
    FakeAmi,
    core_show_channel,
    load_trace_events,
    load_trace_messages,
    queue_entry,
    queue_member,
    queue_params,
)

pytestmark = pytest.mark.timeout(20)


def parse(data: bytes) -> tuple[list[dict[str, str]], list[str]]:
    problems: list[str] = []
    parser = MessageParser(lambda reason, sample: problems.append(reason))
    return parser.feed(data), problems


def test_parser_reads_banner_then_messages_in_wire_order():
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nActionID: a-1\r\nMessage: Authentication accepted\r\n\r\n"
        b"Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: a-2\r\nResponse: Failure\r\n\r\n"
    )
    parser = MessageParser()
    messages = parser.feed(data)
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert messages == [
        {"Response": "Success", "ActionID": "a-1", "Message": "Authentication accepted"},
        {"Event": "OriginateResponse", "Privilege": "call,all", "ActionID": "a-2", "Response": "Failure"},
    ]
    assert list(messages[1]) == ["Event", "Privilege", "ActionID", "Response"]


def test_parser_survives_any_split_of_a_trace():
    raw = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(
        b"".join(f"{k}: {v}\r\n".encode() for k, v in m.items()) + b"\r\n"
        for m in load_trace_messages(TRACES / "full.txt")
    )
    whole, _ = parse(raw)
    for size in (1, 7, 1000):
        parser = MessageParser()
        pieces = [parser.feed(raw[i : i + size]) for i in range(0, len(raw), size)]
        assert [m for piece in pieces for m in piece] == whole
    assert len(whole) == len(load_trace_messages(TRACES / "full.txt"))


def test_parser_keeps_empty_values_and_joins_repeated_headers():
    messages, problems = parse(
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nActionID: act-18\r\nMessage: Command output follows\r\n"
        b"Output: line one\r\nOutput: line two\r\nExtra: \r\nBare:\r\n\r\n"
    )
    assert problems == []
    assert messages[0]["Output"] == "line one\nline two"
    assert messages[0]["Extra"] == "" and messages[0]["Bare"] == ""


def test_parser_accepts_bare_newlines_and_reports_garbage():
    messages, problems = parse(b"Asterisk Call Manager/11.0.0\nEvent: A\nPrivilege: call,all\n\n\xff\xfe\x00\n\n")
    assert messages == [{"Event": "A", "Privilege": "call,all"}]
    assert problems == ["not_a_header"]


def test_parser_without_banner_still_parses_but_says_so():
    messages, problems = parse(b"Event: A\r\nX: 1\r\n\r\n")
    assert problems == ["no_banner"]
    assert messages == [{"Event": "A", "X": "1"}]


def test_parser_drops_an_overlong_line_without_newline_and_resynchronises():
    parser = MessageParser()
    parser.feed(b"Asterisk Call Manager/11.0.0\r\n")
    assert parser.feed(b"Event: Big\r\nData: " + b"y" * 70_000) == []
    assert parser.feed(b"yyy\r\n\r\nEvent: Small\r\nPrivilege: call,all\r\n\r\n") == [
        {"Event": "Small", "Privilege": "call,all"}
    ]


def test_encode_puts_action_and_action_id_first_and_repeats_list_values():
    data = encode_action(
        {"Channel": "Local/start@ivr-inbound/n", "Action": "Originate", "Variable": ["A=1", "B=2"], "Async": "true"},
        "ivr-1",
    )
    assert data == (
        b"Action: Originate\r\nActionID: ivr-1\r\nChannel: Local/start@ivr-inbound/n\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\nAsync: true\r\n\r\n"
    )
    assert encode_action({"Action": "Login", "Username": "ivr", "Secret": "пароль"}, "x").decode() == (
        "Action: Login\r\nActionID: x\r\nUsername: ivr\r\nSecret: пароль\r\n\r\n"
    )


@pytest.mark.parametrize(
    "action",
    [
        {"Action": "Setvar", "Value": "x\r\nAction: Originate"},
        {"Action": "Setvar", "Value": "x\nAction: Originate"},
        {"Action": "Setvar", "Bad\r\nKey": "x"},
        {"Action": "Setvar", "Bad: Key": "x"},
        {"Channel": "no action"},
    ],
)
def test_encode_refuses_injection_and_missing_action(action):
    with pytest.raises(ValueError):
        encode_action(action, "x")


# ----------------------------------------------------------------------------- the fake vs. traces


def test_load_trace_events_keeps_only_events_with_their_times():
    events = load_trace_events(TRACES / "full.txt")
    assert len(events) == 376
    assert all("Event" in e for e in events)
    assert events[0]["Event"] == "FullyBooted"
    assert [e.at for e in events] == sorted(e.at for e in events)
    messages = load_trace_messages(TRACES / "full.txt")
    assert len([m for m in messages if "Event" not in m]) == 16  # answers to the capture's 16 actions
    abandon = [e for e in load_trace_events(TRACES / "queue_abandon.txt") if e["Event"] == "QueueCallerAbandon"]
    assert abandon[0].at == pytest.approx(7.029)


async def talk(port: int, *actions: bytes, wait: float = 0.2) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for action in actions:
            writer.write(action)
        await writer.drain()
        data = b""
        try:
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    data += chunk
        except TimeoutError:
            pass
        return data
    finally:
        writer.close()


def trace_bytes(path, action_id: str) -> bytes:
    """The exact bytes Asterisk sent for one ActionID in a trace (response and list events)."""
    out = b""
    for message in load_trace_messages(path):
        if message.get("ActionID") == action_id:
            out += b"".join(f"{k}: {v}\r\n".encode() for k, v in message.items()) + b"\r\n"
    return out


async def test_fake_speaks_the_login_variants_of_the_trace_byte_for_byte():
    async with FakeAmi(auth_failure_delay=0.01) as fake:
        data = await talk(
            fake.port,
            b"Action: Ping\r\nActionID: c1-1\r\n\r\n",
            b"Action: Login\r\nActionID: c1-2\r\nUsername: ivr\r\nSecret: wrong\r\n\r\n",
        )
        assert data == (
            b"Asterisk Call Manager/11.0.0\r\n"
            b"Response: Error\r\nActionID: c1-1\r\nMessage: Permission denied\r\n\r\n"
            b"Response: Error\r\nActionID: c1-2\r\nMessage: Authentication failed\r\n\r\n"
        )  # and closed: talk() read to EOF
        data = await talk(
            fake.port,
            b"Action: Login\r\nUsername: ivr\r\nSecret: ivrsecret\r\nEvents: off\r\n\r\n",
            b"Action: NoSuchAction\r\nActionID: c4-4\r\n\r\n",
            b"Action: Logoff\r\nActionID: c4-5\r\n\r\n",
        )
        assert data.startswith(
            b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: Authentication accepted\r\n\r\n"
            b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 209\r\nLastReload: 209\r\n"
            b"Status: Fully Booted\r\n\r\nEvent: SuccessfulAuth\r\n"
        )
        assert data.endswith(
            b"Response: Error\r\nActionID: c4-4\r\nMessage: Invalid/unknown command: NoSuchAction. "
            b"Use Action: ListCommands to show available commands.\r\n\r\n"
            b"Response: Goodbye\r\nActionID: c4-5\r\nMessage: Thanks for all the fish.\r\n\r\n"
        )
        assert fake.logins == 1 and fake.failed_logins == 1


async def test_fake_list_answers_match_actions_trace_byte_for_byte():
    path = TRACES / "actions.txt"
    async with FakeAmi(
        channels=[
            core_show_channel(),
            core_show_channel(
                Channel="Local/start@ivr-inbound-00000012;1",
                Context="caller-sim",
                Exten="wait",
                Priority="1",
                Uniqueid="1795751132.39",
                ApplicationData="120",
            ),
        ],
        queue_params=[queue_params(Calls="1")],
        queue_members=[queue_member(LastPause="1795751139", Paused="1", PausedReason="lunch")],
        queue_entries=[queue_entry()],
    ) as fake:
        login = b"Action: Login\r\nActionID: act-1\r\nUsername: ivr\r\nSecret: ivrsecret\r\nEvents: on\r\n\r\n"
        data = await talk(
            fake.port,
            login,
            b"Action: Ping\r\nActionID: act-2\r\n\r\n",
            b"Action: CoreShowChannels\r\nActionID: act-7\r\n\r\n",
            b"Action: QueueStatus\r\nActionID: act-13\r\nQueue: operators\r\n\r\n",
        )
    assert trace_bytes(path, "act-7") in data
    assert trace_bytes(path, "act-13") in data
    assert b"Response: Success\r\nActionID: act-2\r\nPing: Pong\r\nTimestamp: " in data


async def test_fake_md5_challenge_login_works():
    import hashlib

    async with FakeAmi() as fake:
        reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
        await reader.readline()
        writer.write(b"Action: Challenge\r\nActionID: c3-1\r\nAuthType: MD5\r\n\r\n")
        answer = (await reader.readuntil(b"\r\n\r\n")).decode()
        challenge = answer.split("Challenge: ")[1].split("\r\n")[0]
        key = hashlib.md5((challenge + "ivrsecret").encode()).hexdigest()
        writer.write(
            f"Action: Login\r\nActionID: c3-2\r\nAuthType: MD5\r\nUsername: ivr\r\nKey: {key}\r\n\r\n".encode()
        )
        assert await reader.readuntil(b"\r\n\r\n") == (
            b"Response: Success\r\nActionID: c3-2\r\nMessage: Authentication accepted\r\n\r\n"
        )
        writer.close()
        await fake.wait_for_logins(1)
