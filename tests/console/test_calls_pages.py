"""/calls and /calls/{id} over real HTTP with real sessions, both backends: who sees what, filters
through the form, the timeline in order, the player only for supervisors/admins, the transcript."""

from __future__ import annotations

import html
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from crm_bridge.phones import normalize_phone
from ivr.web.console.deps import DEPS_KEY
from tests.console.conftest import PASSWORD, login, start_client
from tests.traces import TRACES

WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"
AT = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # 10:00 Moscow
PLAYER = '<audio controls preload="metadata" src="/calls/{}/recording">'


async def seed(store, recordings: Path) -> None:
    report = await load_demo_data(store.sessions)
    assert report.ok

    async def call(call_id, caller, customer, at, outcome, reason, events=(), **fields):
        await store.record_call_start(call_id=call_id, caller_number=caller, normalized_number=normalize_phone(caller),
                                      customer_id=customer, channel="PJSIP/trunk-1", script="repeat-order",
                                      started_at=at)
        await store.add_timeline_events([
            TimelineEventIn(at=at + timedelta(seconds=i), call_id=call_id, customer_id=customer, kind=k, data=d)
            for i, (k, d) in enumerate(events)
        ])
        await store.record_call_end(call_id, facts=facts_implying(outcome), reason=reason,
                                    ended_at=at + timedelta(minutes=3),
                                    customer_id=customer, order_id=fields.pop("order_id", None))
        if fields:
            await store.update_call(call_id, **fields)

    await call("1763622000.10", "+79161234567", "C001", AT, "order_placed", "order_placed", order_id="A-1001", events=[
        ("call.started", {"caller": "+79161234567"}),
        ("prompt.played", {"step": "menu", "text": "Здравствуйте, Алексей Сергеевич. Нажмите 1."}),
        ("dtmf.received", {"step": "menu", "digits": "1", "timed_out": False}),
        ("order.created", {"order_id": "A-1001", "invoice": "СЧ-1"}),
        ("call.ended", {"outcome": "order_placed", "reason": "order_placed"}),
    ])
    shutil.copyfile(WAV, recordings / "call-20.wav")
    await call("1763625600.20", "8 903 111-22-33", "C002", AT + timedelta(hours=1), "operator", "caller_request",
               events=[
                   ("prompt.played", {"step": "menu", "text": "Чтобы поговорить с оператором, нажмите 0."}),
                   ("dtmf.received", {"step": "menu", "digits": "0", "timed_out": False}),
                   ("call.escalated", {"reason": "caller_request"}),
                   ("queue.entered", {"queue": "operators", "position": 1}),
                   ("operator.ringing", {"operator_interface": "PJSIP/101", "operator_name": "Анна"}),
                   ("operator.answered", {"operator_interface": "PJSIP/101", "operator_name": "Анна",
                                          "hold_time": 14}),
                   ("call.hungup", {"who": "caller", "outcome": "operator_answered"}),
                   ("recording.ready", {"path": str(recordings / "call-20.wav"), "seconds": 3.2, "bytes": 1000}),
               ],
               queue="operators", wait_seconds=14.0, talk_seconds=75.0, operator_interface="PJSIP/101",
               operator_name="Анна", recording_path=str(recordings / "call-20.wav"), recording_seconds=3.2)
    await store.update_call("1763625600.20", facts=facts_implying("operator_answered"))
    await call("1763712000.30", "+79990000000", None, AT + timedelta(days=1), "operator", "unknown_number",
               queue="operators", wait_seconds=30.0)


@pytest.fixture
async def recordings(tmp_path) -> Path:
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
async def client(store, console_app, recordings):
    console_app[DEPS_KEY].recordings_dir = recordings
    await seed(store, recordings)
    client = await start_client(console_app)
    yield client
    await client.close()


def rows(page: str) -> list[str]:
    return re.findall(r'<a href="/calls/([^"/#]+)">', page)


async def test_anonymous_is_sent_to_sign_in(client):
    for url in ("/calls", "/calls/1763622000.10"):
        resp = await client.get(url, allow_redirects=False)
        assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login")


@pytest.mark.parametrize("user", ["op1", "sup1", "adm1"])
async def test_every_role_sees_the_list(client, user):
    await login(client, user, PASSWORD)
    resp = await client.get("/calls")
    assert resp.status == 200
    page = await resp.text()
    assert rows(page) == ["1763712000.30", "1763625600.20", "1763622000.10"]  # newest first
    assert 'href="/customers/C001"' in page and "Иванов Алексей Сергеевич" in page
    assert "Заказ оформлен роботом" in page and "Ответил оператор" in page
    assert "клиент попросил оператора" in page and "номер не найден в базе" in page
    assert "0:14" in page and "1:15" in page  # wait and talk
    assert "A-1001" in page and "Анна" in page
    assert ("Запись" in page) == (user != "op1")


async def test_filters_through_the_form(client):
    await login(client, "op1", PASSWORD)

    async def found(**query) -> list[str]:
        resp = await client.get("/calls", params=query)
        assert resp.status == 200
        return rows(await resp.text())

    assert await found(caller="8 (916) 123-45-67") == ["1763622000.10"]
    assert await found(caller="+7 903 111 22 33") == ["1763625600.20"]
    assert await found(caller="0000") == ["1763712000.30"]
    assert await found(customer="C002") == ["1763625600.20"]
    assert await found(customer="алексей") == ["1763622000.10"]
    assert await found(outcome="operator_answered") == ["1763625600.20"]
    assert await found(outcome="operator") == ["1763712000.30"]
    assert await found(operator="PJSIP/101") == ["1763625600.20"]
    assert await found(operator="101") == ["1763625600.20"]
    assert await found(**{"from": "2026-11-21"}) == ["1763712000.30"]
    assert await found(**{"from": "2026-11-20", "to": "2026-11-20"}) == ["1763625600.20", "1763622000.10"]
    assert await found(**{"to": "20.11.2026"}) == ["1763625600.20", "1763622000.10"]
    resp = await client.get("/calls", params={"from": "вчера"})
    assert resp.status == 200 and "не распознана" in await resp.text()
    assert await found(caller="\x00") == rows(await (await client.get("/calls")).text())  # NUL never reaches the DB


async def test_paging_keeps_the_filters(client, monkeypatch):
    from ivr.web.console import calls_pages

    monkeypatch.setattr(calls_pages, "PAGE_SIZE", 1)
    await login(client, "sup1", PASSWORD)
    page = await (await client.get("/calls", params={"outcome": "operator_answered"})).text()
    assert "Страница" not in page  # one result, one page
    page = await (await client.get("/calls", params={"from": "2026-11-20"})).text()
    assert rows(page) == ["1763712000.30"] and "Страница 1 из 3" in page
    next_url = html.unescape(re.search(r'href="(/calls\?[^"]*page=2)"', page).group(1))
    assert "from=2026-11-20" in next_url
    page = await (await client.get(next_url)).text()
    assert rows(page) == ["1763625600.20"]


async def test_operator_sees_the_call_but_no_player(client):
    await login(client, "op1", PASSWORD)
    resp = await client.get("/calls/1763625600.20")
    assert resp.status == 200
    page = await resp.text()
    assert "<audio" not in page and "/recording" not in page
    assert "Петрова Мария Ивановна" in page and "Анна" in page
    assert (await client.get("/calls/1763625600.20/recording")).status == 403


@pytest.mark.parametrize("user", ["sup1", "adm1"])
async def test_supervisor_sees_the_player(client, user):
    await login(client, user, PASSWORD)
    page = await (await client.get("/calls/1763625600.20")).text()
    assert PLAYER.format("1763625600.20") in page
    audio = await client.get("/calls/1763625600.20/recording", headers={"Range": "bytes=0-3"})
    assert audio.status == 206 and await audio.read() == b"RIFF"
    # No recording, no player.
    page = await (await client.get("/calls/1763622000.10")).text()
    assert "<audio" not in page


async def test_timeline_in_order(client):
    await login(client, "op1", PASSWORD)
    page = await (await client.get("/calls/1763625600.20")).text()
    expected = [
        "Робот сказал", "Чтобы поговорить с оператором, нажмите 0.",
        "Нажаты клавиши", "«0»",
        "Передан оператору",
        "Вошёл в очередь", "очередь operators",
        "Звонит оператору", "Ответил оператор", "ждал 0:14",
        "Звонок завершён",
        "Запись готова", "call-20.wav",
    ]
    timeline = page[page.index("Ход звонка"):]
    positions = [timeline.index(text) for text in expected]
    assert positions == sorted(positions), list(zip(expected, positions, strict=True))
    order_page = await (await client.get("/calls/1763622000.10")).text()
    assert "Здравствуйте, Алексей Сергеевич. Нажмите 1." in order_page
    assert 'href="/customers/C001#order-A-1001"' in order_page


async def test_unknown_call_is_404(client):
    await login(client, "op1", PASSWORD)
    resp = await client.get("/calls/no-such-call")
    assert resp.status == 404 and "Звонок не найден" in await resp.text()


async def test_transcript_when_a_sidecar_exists(client, recordings):
    await login(client, "sup1", PASSWORD)
    page = await (await client.get("/calls/1763625600.20")).text()
    assert "Расшифровка" not in page  # no sidecar: nothing

    (recordings / "call-20.wav.txt").write_text("Оператор: Здравствуйте!\nКлиент: Мне воду, пожалуйста.\n")
    page = await (await client.get("/calls/1763625600.20")).text()
    assert "Расшифровка" in page and "Мне воду, пожалуйста." in page

    (recordings / "call-20.wav.txt").unlink()
    (recordings / "call-20.json").write_text(json.dumps({"segments": [
        {"speaker": "оператор", "start": 0.5, "end": 2.0, "text": "Добрый день, <b>Анна</b>"},
        {"speaker": "клиент", "start": 2.5, "end": 4.0, "text": "Две бутылки"},
    ]}, ensure_ascii=False))
    page = await (await client.get("/calls/1763625600.20")).text()
    assert "Две бутылки" in page and "<b>оператор:</b>" in page
    assert "&lt;b&gt;Анна&lt;/b&gt;" in page  # escaped, never markup
    # The transcript is the recording's words: operators see neither.
    await login(client, "op1", PASSWORD)
    page = await (await client.get("/calls/1763625600.20")).text()
    assert "Расшифровка" not in page and "Две бутылки" not in page


async def test_transcript_sidecar_outside_the_directory_is_ignored(store, console_app, tmp_path):
    recordings = tmp_path / "rec"
    recordings.mkdir()
    shutil.copyfile(WAV, recordings / "x.wav")
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    (recordings / "x.wav.txt").symlink_to(tmp_path / "secret.txt")
    console_app[DEPS_KEY].recordings_dir = recordings
    await store.update_call("t.1", started_at=AT, recording_path=str(recordings / "x.wav"))
    client = await start_client(console_app)
    try:
        await login(client, "sup1", PASSWORD)
        page = await (await client.get("/calls/t.1")).text()
        assert "TOP-SECRET" not in page and "Расшифровка" not in page
    finally:
        await client.close()
