"""AmiClient against the fake AMI over real TCP: login, auth failure, reconnects, actions, events."""

from __future__ import annotations

import asyncio
import time

import pytest

from ivr.ami import AmiActionError, AmiNotConnected, AmiTimeout
from tests.ami.conftest import Collector, ami_settings, wait_until
from tests.fakeami import (
    TRACES,
    FakeAmi,
    core_show_channel,
    load_trace_events,
    queue_entry,
    queue_member,
    queue_params,
)

pytestmark = pytest.mark.timeout(20)


def without_action_id(items):
    return [{k: v for k, v in item.items() if k != "ActionID"} for item in items]


async def connected(client, timeout: float = 3.0) -> None:
    await wait_until(lambda: client.status == "connected", timeout)


async def settled(events: Collector) -> None:
    """Login events and the first resync delivered: nothing of ours is in flight any more."""
    await events.wait(lambda: len(events.events) >= 2 and len(events.resyncs) >= 1)


# ------------------------------------------------------------------------------------------ login


async def test_login_success_connects_and_fully_booted_is_just_an_event(fake, make_client, logs):
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    assert client.status == "disconnected"
    await client.start()
    assert client.status == "connecting"  # start() returns before the login answer
    await connected(client)
    await events.wait(lambda: len(events.events) >= 2)
    assert events.names()[:2] == ["FullyBooted", "SuccessfulAuth"]
    assert events.events[0] == {
        "Event": "FullyBooted",
        "Privilege": "system,all",
        "Uptime": "209",
        "LastReload": "209",
        "Status": "Fully Booted",
    }
    health = client.health()
    assert health["status"] == "connected"
    assert health["last_error"] is None
    assert health["connected_since"] is not None and health["connected_since"] <= time.time()
    assert health["reconnects"] == 0
    assert health["last_event_at"] is not None
    assert logs.at_level("error", "warning") == []
    assert len(logs.named("ami_connected")) == 1


async def test_events_written_together_with_the_login_answer_are_all_delivered_in_order(make_client):
    extra = [
        {"Event": "Newchannel", "Privilege": "call,all", "Channel": "PJSIP/100-00000001", "Uniqueid": "1.1"},
        {"Event": "Hangup", "Privilege": "call,all", "Channel": "PJSIP/100-00000001", "Uniqueid": "1.1"},
    ]
    async with FakeAmi(login_events=extra) as fake:
        events = Collector()
        client = make_client(ami_settings(fake.port), events)
        await client.start()
        await events.wait(lambda: len(events.events) >= 4)
        assert events.names() == ["FullyBooted", "SuccessfulAuth", "Newchannel", "Hangup"]
        assert events.events[2:] == extra
        await client.stop()


@pytest.mark.parametrize(("username", "secret"), [("ivr", "wrong"), ("nobody", "x")])
async def test_bad_credentials_mean_auth_failed_logged_once_and_no_hammering(fake, make_client, logs, username, secret):
    client = make_client(ami_settings(fake.port, username=username, secret=secret, reconnect_max=0.3))
    await client.start()
    await asyncio.sleep(1.0)
    assert client.status == "auth_failed"
    assert "Authentication failed" in client.health()["last_error"]
    # attempts at ~0, then every 0.225..0.3 s: never a tight loop
    assert 2 <= fake.connection_count <= 5
    # the last connection may still be waiting for Asterisk's deliberate ~1 s "Authentication failed"
    assert fake.connection_count - 1 <= fake.failed_logins <= fake.connection_count
    errors = logs.at_level("error")
    assert [e["event"] for e in errors] == ["ami_auth_failed"]  # one state change, one error
    assert errors[0]["username"] == username
    assert "secret" not in errors[0] or errors[0]["secret"] != secret
    assert all(secret not in str(e) for e in logs.capture.entries if secret != "x")
    assert fake.actions_before_login == []


async def test_auth_failed_retries_at_reconnect_max_only(fake, make_client):
    client = make_client(ami_settings(fake.port, secret="wrong", reconnect_min=0.05, reconnect_max=30.0))
    await client.start()
    await asyncio.sleep(1.0)
    assert client.status == "auth_failed"
    assert fake.connection_count == 1


async def test_client_recovers_once_the_secret_is_fixed_on_the_server(fake, make_client, logs):
    fake.secret = "new-secret"
    client = make_client(ami_settings(fake.port, reconnect_max=0.2))
    await client.start()
    await wait_until(lambda: client.status == "auth_failed")
    fake.secret = "ivrsecret"
    await connected(client)
    assert client.health()["reconnects"] >= 1
    assert len(logs.named("ami_connected")) == 1


async def test_no_action_is_sent_before_login(fake, make_client):
    fake.auth_failure_delay = 0.05
    client = make_client(ami_settings(fake.port))
    with pytest.raises(AmiNotConnected):
        await client.send_action({"Action": "Ping"})
    await client.start()
    with pytest.raises(AmiNotConnected):  # still logging in
        await client.send_action({"Action": "Ping"})
    await connected(client)
    await client.send_action({"Action": "Ping"})
    await fake.drop_clients()
    await fake.wait_for_logins(2)
    await connected(client)
    assert fake.actions_before_login == []
    per_connection: dict[int, list[str]] = {}
    for number, headers in fake.actions:
        per_connection.setdefault(number, []).append(dict(headers)["Action"])
    assert all(names[0] == "Login" for names in per_connection.values())


async def test_disabled_settings_never_connect(fake, make_client, logs):
    client = make_client(ami_settings(fake.port, username=""))
    assert client.status == "disabled"
    await client.start()
    await client.start()
    await asyncio.sleep(0.2)
    assert fake.connection_count == 0
    assert client.status == "disabled"
    assert client.health()["status"] == "disabled"
    assert len(logs.named("ami_disabled")) == 1
    with pytest.raises(AmiNotConnected):
        await client.send_action({"Action": "Ping"})
    await client.stop()
    assert client.status == "disabled"


# ----------------------------------------------------------------------------------------- events


@pytest.mark.parametrize("trace", ["full.txt", "queue_abandon.txt"])
async def test_every_trace_event_reaches_on_event_in_order_with_exact_values(fake, make_client, trace):
    expected = load_trace_events(TRACES / trace)
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await settled(events)
    await fake.push(expected)
    await events.wait(lambda: len(events.events) >= 2 + len(expected), timeout=5)
    got = events.events[2:]
    assert got == [dict(e) for e in expected]
    if trace == "full.txt":
        connects = [e for e in got if e["Event"] == "AgentConnect"]
        assert len(connects) == 1
        assert (connects[0]["Queue"], connects[0]["HoldTime"], connects[0]["RingTime"]) == ("operators", "0", "0")
        assert connects[0]["MemberName"] == "Operator 101"
        complete = [e for e in got if e["Event"] == "AgentComplete"]
        assert [(e["TalkTime"], e["Reason"]) for e in complete] == [("6", "agent")]
        assert any("Иван Петров" in e.get("Value", "") for e in got)
    else:
        abandon = [e for e in got if e["Event"] == "QueueCallerAbandon"]
        assert len(abandon) == 1
        assert abandon[0]["HoldTime"] == "7"
        assert abandon[0]["Queue"] == "operators-noanswer"
        assert abandon[0]["Uniqueid"] == "1795751049.19"


async def test_trace_replayed_with_its_own_timing_keeps_order(fake, make_client):
    expected = load_trace_events(TRACES / "menu_operator_senddtmf.txt")
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await settled(events)
    await fake.push(expected, speed=100.0)  # ~10 s of capture in ~0.1 s
    await events.wait(lambda: len(events.events) >= 2 + len(expected), timeout=5)
    assert events.events[2:] == [dict(e) for e in expected]


async def test_garbage_overlong_and_unknown_input_is_skipped_and_later_events_still_arrive(fake, make_client, logs):
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await settled(events)
    fake.send_raw(b"\x00\xff\xfe binary garbage\r\n\r\n")
    fake.send_raw(b"no separator in this line\r\nEvent: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Kept\r\n\r\n")
    fake.send_raw(b"Foo: neither event nor response\r\n\r\n")
    fake.send_raw(b"Event: Huge\r\nData: " + b"x" * 70_000 + b"\r\n\r\n")
    fake.send_raw(b"Event: Lines\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(1200)) + b"\r\n")
    await fake.push([{"Event": "BrandNewEventType", "Privilege": "call,all", "Foo": "bar"}])
    await fake.push([{"Event": "Hangup", "Privilege": "call,all", "Channel": "PJSIP/1-1", "Cause": "16"}])
    await events.wait(lambda: "Hangup" in events.names())
    assert events.names()[2:] == ["UserEvent", "BrandNewEventType", "Hangup"]
    assert events.events[2] == {"Event": "UserEvent", "Privilege": "user,all", "UserEvent": "Kept"}
    reasons = {e["reason"] for e in logs.named("ami_malformed_input")}
    assert {"not_a_header", "neither_event_nor_response", "line_too_long", "message_too_long"} <= reasons
    assert client.status == "connected"
    assert fake.logins == 1
    assert (await client.send_action({"Action": "Ping"}))[0]["Ping"] == "Pong"


async def test_utf8_split_between_two_reads_is_not_damaged(fake, make_client):
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await settled(events)
    data = "Event: VarSet\r\nPrivilege: dialplan,all\r\nVariable: IVR_NAME_RU\r\nValue: Иван Петров\r\n\r\n".encode()
    cut = data.index("Иван".encode()) + 1  # inside the two bytes of "И"
    fake.send_raw(data[:cut])
    await asyncio.sleep(0.05)
    fake.send_raw(data[cut:])
    await events.wait(lambda: len(events.events) >= 3)
    assert events.events[2]["Value"] == "Иван Петров"


async def test_a_failing_handler_is_logged_and_delivery_goes_on(fake, make_client, logs):
    seen: list[str] = []

    async def on_event(event):
        seen.append(event["Event"])
        if event["Event"] == "Boom":
            raise RuntimeError("handler bug")
        if event["Event"] == "SyncBoom":
            raise ValueError("sync")

    client = make_client(ami_settings(fake.port), on_event=on_event)
    await client.start()
    await connected(client)
    await fake.push(
        [
            {"Event": "Boom", "Privilege": "call,all"},
            {"Event": "SyncBoom", "Privilege": "call,all"},
            {"Event": "After", "Privilege": "call,all"},
        ]
    )
    await wait_until(lambda: "After" in seen)
    assert seen[-3:] == ["Boom", "SyncBoom", "After"]
    failures = logs.named("ami_handler_failed")
    assert [f["ami_event"] for f in failures] == ["Boom", "SyncBoom"]
    assert client.status == "connected"


async def test_a_slow_handler_does_not_block_actions_or_reorder_events(fake, make_client):
    release = asyncio.Event()
    seen: list[str] = []

    async def on_event(event):
        if event["Event"] == "Slow":
            await release.wait()
        seen.append(event["Event"])

    client = make_client(ami_settings(fake.port), on_event=on_event)
    await client.start()
    await connected(client)
    await fake.push([{"Event": "Slow", "Privilege": "call,all"}, {"Event": "Next", "Privilege": "call,all"}])
    await asyncio.sleep(0.05)
    assert (await client.send_action({"Action": "Ping"}, timeout=1))[0]["Ping"] == "Pong"
    assert "Next" not in seen
    release.set()
    await wait_until(lambda: "Next" in seen)
    assert seen[-2:] == ["Slow", "Next"]



async def test_a_handler_falling_behind_drops_the_stream_then_resyncs_once_it_caught_up(fake, make_client, logs):
    """At most max_queued_events wait in memory; the rest of the stream is not queued without bound
    nor lost silently: the session is dropped, and after the handler caught up, login + resync."""
    fake.channels = [core_show_channel()]
    order: list[str] = []
    blocked, release = asyncio.Event(), asyncio.Event()

    async def on_event(event):
        if event["Event"] == "Block":
            blocked.set()
            await release.wait()
        order.append(event.get("N", event["Event"]))

    client = make_client(ami_settings(fake.port, max_queued_events=50), on_event=on_event,
                         on_resync=lambda items: order.append(f"resync:{len(items)}"))
    await client.start()
    await wait_until(lambda: "resync:1" in order)
    await fake.push([{"Event": "Block", "Privilege": "call,all"}])
    await blocked.wait()
    await fake.push([{"Event": "Newstate", "Privilege": "call,all", "N": str(n)} for n in range(500)])
    await wait_until(lambda: client.status == "disconnected")

    health = client.health()
    assert health["queued_events"] == 50 and health["queue_overflows"] == 1
    assert fake.logins == 1, "no new login while the handler is still behind"
    [line] = logs.named("ami_disconnected")
    assert line["error"].startswith("event queue full (50 events waiting for the handler)")
    del order[:]
    release.set()
    await wait_until(lambda: any(o.startswith("resync") for o in order))
    # Everything queued, in order, then the new session's login events and its snapshot.
    assert order == ["Block", *map(str, range(50)), "FullyBooted", "SuccessfulAuth", "resync:1"]
    assert fake.logins == 2 and client.status == "connected"
    await fake.push([{"Event": "Newstate", "Privilege": "call,all", "N": "after"}])
    await wait_until(lambda: order[-1] == "after")
    assert client.health()["queued_events"] == 0

# ------------------------------------------------------------------------------ reconnect, resync


async def test_disconnect_reconnects_with_backoff_logs_in_again_and_resyncs(make_client, logs):
    channels = [
        core_show_channel(),
        core_show_channel(
            Channel="Local/start@ivr-inbound-00000012;1",
            Context="caller-sim",
            Exten="wait",
            Priority="1",
            Uniqueid="1795751132.39",
            ApplicationData="120",
        ),
    ]
    async with FakeAmi(
        channels=channels,
        queue_params=[queue_params(Calls="1")],
        queue_members=[queue_member()],
        queue_entries=[queue_entry()],
    ) as fake:
        events = Collector()
        client = make_client(ami_settings(fake.port, reconnect_min=0.1, reconnect_max=0.4), events)
        await client.start()
        await events.wait(lambda: len(events.resyncs) == 1)
        first = events.resyncs[0]
        assert [i["Event"] for i in first] == [
            "CoreShowChannel",
            "CoreShowChannel",
            "QueueParams",
            "QueueMember",
            "QueueEntry",
        ]
        assert without_action_id(first[:2]) == [{"Event": "CoreShowChannel", **dict(c)} for c in channels]
        assert first[2]["Calls"] == "1" and first[4]["Channel"] == "Local/start@ivr-inbound-00000012;2"

        fake.channels = channels[:1]  # what Asterisk has after the outage
        dropped_at = time.monotonic()
        await fake.drop_clients()
        await wait_until(lambda: client.status != "connected")
        await events.wait(lambda: len(events.resyncs) == 2)
        assert fake.logins == 2
        assert fake.login_times[1] - dropped_at >= 0.1  # waited reconnect_min, no instant retry
        assert [i["Event"] for i in events.resyncs[1]][:1] == ["CoreShowChannel"]
        assert len([i for i in events.resyncs[1] if i["Event"] == "CoreShowChannel"]) == 1
        assert client.status == "connected"
        assert client.health()["reconnects"] == 1
        assert logs.named("ami_disconnected")[0]["error"]
        assert fake.action_names().count("CoreShowChannels") == 2
        assert fake.action_names().count("QueueStatus") == 2

        await fake.push([{"Event": "Newchannel", "Privilege": "call,all", "Channel": "PJSIP/1-2"}])
        await events.wait(lambda: events.names()[-1:] == ["Newchannel"])


async def test_resync_is_delivered_in_stream_order_after_the_login_events(fake, make_client):
    fake.channels = [core_show_channel()]
    order: list[str] = []
    client = make_client(
        ami_settings(fake.port),
        on_event=lambda e: order.append(e["Event"]),
        on_resync=lambda items: order.append(f"resync:{len(items)}"),
    )
    await client.start()
    await wait_until(lambda: any(o.startswith("resync") for o in order))
    assert order == ["FullyBooted", "SuccessfulAuth", "resync:1"]


async def test_backoff_doubles_up_to_reconnect_max_while_asterisk_refuses(make_client, logs):
    attempts: list[float] = []

    async def slam(reader, writer):  # accepts and hangs up at once, like a restarting Asterisk
        attempts.append(time.monotonic())
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = make_client(ami_settings(port, reconnect_min=0.05, reconnect_max=0.4))
        await client.start()
        await asyncio.sleep(1.6)
        await client.stop()
    finally:
        server.close()
        await server.wait_closed()
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 4 <= len(attempts) <= 9
    assert gaps[0] < 0.15  # ~reconnect_min
    assert max(gaps) <= 0.4 + 0.1
    assert gaps[3] > gaps[0] * 2  # it grew
    assert len(logs.named("ami_disconnected")) == 1  # logged once per state change, retries at debug
    assert len(logs.named("ami_retry_failed")) >= 2


async def test_missed_pings_drop_the_connection_and_reconnect(fake, make_client, logs):
    client = make_client(ami_settings(fake.port, ping_interval=0.1, action_timeout=0.2))
    await client.start()
    await connected(client)
    await asyncio.sleep(0.25)
    assert fake.action_names().count("Ping") >= 1  # pings flow while answered
    assert fake.logins == 1
    fake.stop_answering_pings = True
    await fake.wait_for_logins(2, timeout=3)
    assert logs.named("ami_ping_timeout")
    assert "Ping" in client.health()["last_error"]
    fake.stop_answering_pings = False
    await connected(client)
    logins = fake.logins
    await asyncio.sleep(0.4)
    assert fake.logins == logins  # stable again


async def test_resync_refused_is_logged_and_the_session_stays_up(fake, make_client, logs):
    fake.action_handlers["CoreShowChannels"] = lambda h: [
        [("Response", "Error"), ("ActionID", dict(h)["ActionID"]), ("Message", "Permission denied")]
    ]
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await wait_until(lambda: bool(logs.named("ami_resync_failed")))
    assert logs.named("ami_resync_failed")[0]["message"] == "Permission denied"
    await asyncio.sleep(0.1)
    assert events.resyncs == []
    assert client.status == "connected"
    assert fake.logins == 1


# ---------------------------------------------------------------------------------------- actions


async def test_send_action_times_out_with_ami_timeout_and_the_late_answer_is_dropped(fake, make_client):
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await connected(client)
    fake.ignore_actions = {"Getvar"}
    started = time.monotonic()
    with pytest.raises(AmiTimeout):
        await client.send_action({"Action": "Getvar", "Variable": "X"}, timeout=0.15)
    assert 0.14 <= time.monotonic() - started < 0.5
    with pytest.raises(AmiTimeout):  # default deadline: action_timeout
        await client.send_action({"Action": "Getvar", "Variable": "X"})
    assert (await client.send_action({"Action": "Ping"}))[0]["Ping"] == "Pong"
    assert client.status == "connected"


async def test_response_error_raises_ami_action_error_with_asterisks_message(fake, make_client):
    client = make_client(ami_settings(fake.port))
    await client.start()
    await connected(client)
    with pytest.raises(AmiActionError) as caught:
        await client.send_action({"Action": "NoSuchAction"})
    assert caught.value.message == (
        "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show available commands."
    )
    assert caught.value.response["Response"] == "Error"
    fake.action_handlers["Hangup"] = lambda h: [
        [("Response", "Error"), ("ActionID", dict(h)["ActionID"]), ("Message", "No such channel")]
    ]
    with pytest.raises(AmiActionError, match="No such channel"):
        await client.send_action({"Action": "Hangup", "Channel": "PJSIP/no-such-channel-00000000"})


async def test_list_actions_return_their_items(fake, make_client):
    fake.channels = [core_show_channel(), core_show_channel(Channel="PJSIP/101-00000002")]
    fake.queue_params = [queue_params(), queue_params(Queue="operators-sip")]
    fake.queue_members = [queue_member(), queue_member(Queue="operators-sip", Name="Operator 102")]
    client = make_client(ami_settings(fake.port))
    await client.start()
    await connected(client)
    items = await client.send_action({"Action": "CoreShowChannels"})
    assert [i["Channel"] for i in items] == ["Local/start@ivr-inbound-00000012;2", "PJSIP/101-00000002"]
    only = await client.send_action({"Action": "QueueStatus", "Queue": "operators-sip"})
    assert [(i["Event"], i["Queue"]) for i in only] == [
        ("QueueParams", "operators-sip"),
        ("QueueMember", "operators-sip"),
    ]
    assert await client.send_action({"Action": "CoreShowChannels", "ActionID": "mine-1"}) == [
        {"Event": "CoreShowChannel", "ActionID": "mine-1", **dict(c)} for c in fake.channels
    ]
    fake.channels = []
    assert await client.send_action({"Action": "CoreShowChannels"}) == []


async def test_async_originate_answer_returns_and_originate_response_goes_to_on_event(fake, make_client):
    def originate(headers):
        action_id = dict(headers)["ActionID"]
        return [
            [("Response", "Success"), ("ActionID", action_id), ("Message", "Originate successfully queued")],
            [
                ("Event", "OriginateResponse"),
                ("Privilege", "call,all"),
                ("ActionID", action_id),
                ("Response", "Failure"),
                ("Channel", "PJSIP/nobody"),
                ("Reason", "0"),
            ],
        ]

    fake.action_handlers["Originate"] = originate
    events = Collector()
    client = make_client(ami_settings(fake.port), events)
    await client.start()
    await connected(client)
    answer = await client.send_action({"Action": "Originate", "Channel": "PJSIP/nobody", "Async": "true"})
    assert answer[0]["Message"] == "Originate successfully queued"
    await events.wait(lambda: "OriginateResponse" in events.names())
    assert events.events[-1]["Response"] == "Failure"


async def test_header_injection_is_refused_before_anything_is_sent(fake, make_client):
    client = make_client(ami_settings(fake.port))
    await client.start()
    await connected(client)
    before = len(fake.actions)
    with pytest.raises(ValueError):
        await client.send_action({"Action": "Setvar", "Variable": "X", "Value": "a\r\nAction: Originate"})
    assert len(fake.actions) == before


async def test_pending_action_fails_fast_when_the_connection_drops(fake, make_client):
    client = make_client(ami_settings(fake.port, action_timeout=3.0))
    await client.start()
    await connected(client)
    fake.ignore_actions = {"Getvar"}
    pending = asyncio.create_task(client.send_action({"Action": "Getvar", "Variable": "X"}))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await fake.drop_clients()
    with pytest.raises(AmiNotConnected):
        await pending
    assert time.monotonic() - started < 1.0


# ------------------------------------------------------------------------------------------ stop


async def test_stop_logs_off_and_leaves_no_tasks_behind(fake, make_client):
    client = make_client(ami_settings(fake.port, ping_interval=0.05))
    await client.start()
    await connected(client)
    await client.stop()
    assert client.status == "disconnected"
    assert fake.action_names()[-1] == "Logoff"
    leftovers = [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("ami-")]
    assert leftovers == []
    await asyncio.sleep(0.2)
    assert fake.logins == 1  # no reconnect after Goodbye
    await client.stop()  # idempotent


async def test_stop_while_waiting_to_reconnect_is_immediate(make_client):
    async with FakeAmi() as fake:
        port = fake.port
    client = make_client(ami_settings(port, reconnect_min=5.0, reconnect_max=10.0))  # nothing listens now
    await client.start()
    await wait_until(lambda: client.status == "disconnected")
    started = time.monotonic()
    await client.stop()
    assert time.monotonic() - started < 0.5
    assert [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("ami-")] == []


async def test_every_status_change_is_told_to_on_status_and_a_requested_stop_is_no_warning(fake, make_client, logs):
    statuses: list[str] = []
    changed = asyncio.Event()

    def on_status(status: str) -> None:
        statuses.append(status)
        changed.set()

    client = make_client(ami_settings(fake.port), on_status=on_status)
    await client.start()
    await connected(client)
    await fake.drop_clients()  # Asterisk restarts: the client says so, then logs in again
    await fake.wait_for_logins(2)
    await connected(client)
    await client.stop()
    assert statuses == ["connecting", "connected", "disconnected", "connected", "disconnected"]
    assert len(logs.named("ami_disconnected")) == 1  # the drop, not the stop we asked for
