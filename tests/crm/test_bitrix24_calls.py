"""Whole calls through the fake Asterisk reach the fake Bitrix24 portal as its telephony integrations
do: register → finish (→ attachRecord, whose link the portal fetches from our web server →
attachTranscription, the transcript's phrases per side), once and in order, also across an outage
and the portal's own rate limit; its token never shows."""

from __future__ import annotations

import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from crm_bridge.call_log import CallUpdate, TimelineRecord
from crm_bridge.connectors.bitrix24 import transcript_messages
from crm_bridge.contract.events import EventKind
from crm_bridge.demo import load_demo_data
from crm_bridge.models import Transcript
from crm_bridge.sync.store import SyncStore
from crm_bridge.transcripts import TranscriptState, TranscriptStore, TranscriptWord, event_uid, pending_row
from ivr.app import Seams, start_service
from tests.calls.harness import CallHarness, database_url, harness_settings, wait_for
from tests.crm.fake_bitrix24 import FakeBitrix24
from tests.traces import TRACES

WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"
LINK_SECRET = "recording-link-secret-0123456789"


async def all_delivered(harness: CallHarness, rows: int) -> bool:
    """The fake saw the request before our worker marked the row: wait for the marks too."""
    assert harness.service.outbox is not None
    items = await harness.service.outbox.store.items()
    return len(items) == rows and all(i.state == "delivered" for i in items)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_bridge(store, prompts_dir: Path, bitrix: FakeBitrix24, recordings: Path,
                       **crm: object) -> CallHarness:
    await load_demo_data(store.sessions)
    port = free_port()
    settings = harness_settings(
        database_url(store), prompts_dir,
        web={"enabled": True, "host": "127.0.0.1", "port": port},
        recordings={"dir": str(recordings)},
        crm={"targets": ["bitrix24"], "retry_min": 0.2, "retry_max": 1.0, "poll_interval": 0.05,
             "request_timeout": 2.0, "public_url": f"http://127.0.0.1:{port}", "link_secret": LINK_SECRET, **crm},
        crm_bitrix24={"webhook_url": bitrix.webhook_url, "default_user": 1, "users": {"PJSIP/101": "7"}},
    )
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True))
    return CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    path = tmp_path / "recordings"
    path.mkdir()
    return path


async def test_a_call_is_registered_then_finished_then_its_recording_attached(store, prompts_dir, bitrix,
                                                                              recordings) -> None:
    harness = await start_bridge(store, prompts_dir, bitrix, recordings)
    try:
        bitrix.contacts["+79161234567"] = 77  # the caller is a contact of the portal
        fake = await harness.call("+79161234567", ["1"])
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        await wait_for(lambda: all_delivered(harness, 3), timeout=30)
        # The register, then the order as a deal (a retry looks it up first: never two), then the finish.
        # (a request the portal's 2/s limit turned away is asked again: the lookups may repeat)
        methods = bitrix.methods()
        assert methods[0] == "telephony.externalcall.register" and methods[-1] == "telephony.externalcall.finish"
        deal_calls = [methods.index(m) for m in ("crm.duplicate.findbycomm", "crm.deal.add",
                                                 "crm.deal.productrows.set")]
        assert deal_calls == sorted(deal_calls)
        assert methods.count("crm.deal.add") == 1
        [deal] = bitrix.deals.values()
        order_id = deal.fields["ORIGIN_ID"]
        assert deal.fields["TITLE"] == f"Заказ {order_id}" and deal.fields["ORIGINATOR_ID"] == "ivr"
        assert (deal.fields["STAGE_ID"], deal.fields["CURRENCY_ID"], deal.fields["CONTACT_ID"]) == ("NEW", "RUB", 77)
        assert deal.rows == [{"PRODUCT_NAME": "бутылка воды «Жемчужная роса» 19 л", "PRICE": "350.00", "QUANTITY": 4}]
        assert deal.fields["OPPORTUNITY"] == "1400.00"  # the portal's sum of the rows, as our total
        # The pull from this portal will know the deal is this order (crm_bridge/sync): never a second one.
        [deal_id] = [k for k, v in bitrix.deals.items() if v is deal]
        assert await SyncStore(store.sessions).refs("bitrix24", "deal") == {str(deal_id): order_id}
        [(remote, call)] = bitrix.calls.items()
        assert call.register["PHONE_NUMBER"] == "+79161234567"
        assert (call.register["TYPE"], call.register["SHOW"], call.register["CRM_CREATE"]) == (2, 0, 1)
        assert call.finish is not None
        assert (call.finish["STATUS_CODE"], call.finish["USER_ID"], call.finish["ADD_TO_CHAT"]) == ("200", 1, 0)

        # The tracker's word that the recording is there (AMI is off in the harness: said by hand).
        shutil.copyfile(WAV, recordings / f"{call_id}.wav")
        now = datetime.now(UTC)
        await harness.records.submit([
            CallUpdate(call_id=call_id, fields={"recording_path": str(recordings / f"{call_id}.wav")}, started_at=now),
            TimelineRecord(at=now, call_id=call_id, customer_id=None, kind="recording.ready",
                           data={"path": str(recordings / f"{call_id}.wav"), "seconds": 6.8, "bytes": 1}),
        ])
        await wait_for(lambda: call.record is not None, timeout=20)
        assert call.record == WAV.read_bytes()  # fetched through the signed link, from our web server
        assert call.record_name == f"{call_id}.wav"
        assert bitrix.methods()[-1] == "telephony.externalCall.attachRecord"
    finally:
        await harness.stop()


# A stereo recording's words as the transcriber stores them (left: the caller, right: the robot), out
# of time order as the two tracks come out of the recognizer one after the other.
ROBOT = [("здравствуйте", 0.2, 0.9), ("алексей", 1.0, 1.6), ("сергеевич", 1.6, 2.4), ("заказ", 5.0, 5.5),
         ("принят", 5.5, 6.1), ("до", 8.0, 8.4), ("свидания", 8.4, 8.9)]
CALLER = [("да", 3.1, 3.4), ("повторить", 3.5, 4.2), ("спасибо", 9.3, 9.9)]
WORDS = [TranscriptWord(w, a, b, 0.9, 0, "caller") for w, a, b in CALLER] + \
        [TranscriptWord(w, a, b, 0.9, 1, "robot") for w, a, b in ROBOT]


async def write_transcript(harness: CallHarness, call_id: str, path: str, words: list[TranscriptWord],
                           state: TranscriptState = TranscriptState.DONE) -> None:
    """What ivr.speech.transcriber does once vosk is done: the row settled, then transcript.ready."""
    async with harness.store.sessions() as session:
        session.add(Transcript(**pending_row(call_id, path, datetime.now(UTC))))
        await session.commit()
    transcripts = TranscriptStore(harness.store.sessions)
    [job] = await transcripts.claim(datetime.now(UTC), limit=1, lease=60)
    text = " ".join(w.word for w in sorted(words, key=lambda w: w.start))
    assert await transcripts.finish(job, datetime.now(UTC), state=state, text=text, words=words, language="ru",
                                    model="vosk-model-ru", channels=2, audio_seconds=10.0, work_seconds=1.0)
    await harness.records.submit([TimelineRecord(
        at=datetime.now(UTC), call_id=call_id, customer_id=None, kind=EventKind.TRANSCRIPT_READY.value,
        data={"transcript_id": job.id, "state": state.value, "language": "ru", "model": "vosk-model-ru",
              "seconds": 10.0, "words": len(words), "speakers": ["caller", "robot"], "text": text},
        uid=event_uid(job.id))])


async def test_a_calls_transcript_follows_its_recording_as_phrases_per_side(store, prompts_dir, bitrix,
                                                                           recordings) -> None:
    harness = await start_bridge(store, prompts_dir, bitrix, recordings)
    try:
        fake = await harness.call("+79161234567", ["1"])
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        # The robot's end is written when the record writer flushes; the tracker's recording comes later.
        await wait_for(lambda: all_delivered(harness, 3), timeout=30)
        path = str(recordings / f"{call_id}.wav")
        shutil.copyfile(WAV, path)
        now = datetime.now(UTC)
        await harness.records.submit([
            CallUpdate(call_id=call_id, fields={"recording_path": path}, started_at=now),
            TimelineRecord(at=now, call_id=call_id, customer_id=None, kind="recording.ready",
                           data={"path": path, "seconds": 6.8, "bytes": 1}),
        ])
        await write_transcript(harness, call_id, path, WORDS)
        await wait_for(lambda: all_delivered(harness, 5), timeout=30)  # + the order's deal
        [(remote, call)] = bitrix.calls.items()
        telephony = [m for m, p in bitrix.log if m.startswith("telephony.")]
        assert telephony == ["telephony.externalcall.register", "telephony.externalcall.finish",
                             "telephony.externalCall.attachRecord", "telephony.call.attachTranscription"]
        assert call.record == WAV.read_bytes() and call.transcription is not None
        assert (call.transcription["CALL_ID"], call.transcription["COST"], call.transcription["COST_CURRENCY"]) == (
            remote, 0, "RUB")
        assert call.transcription["MESSAGES"] == [
            {"SIDE": "User", "START_TIME": 0, "STOP_TIME": 3, "MESSAGE": "здравствуйте алексей сергеевич"},
            {"SIDE": "Client", "START_TIME": 3, "STOP_TIME": 5, "MESSAGE": "да повторить"},
            {"SIDE": "User", "START_TIME": 5, "STOP_TIME": 7, "MESSAGE": "заказ принят"},
            {"SIDE": "User", "START_TIME": 8, "STOP_TIME": 9, "MESSAGE": "до свидания"},  # after a 1.9 s pause
            {"SIDE": "Client", "START_TIME": 9, "STOP_TIME": 10, "MESSAGE": "спасибо"},
        ]
    finally:
        await harness.stop()


async def test_a_transcript_with_nothing_in_it_reaches_the_portal_as_nothing(store, prompts_dir, bitrix,
                                                                            recordings) -> None:
    harness = await start_bridge(store, prompts_dir, bitrix, recordings)
    try:
        fake = await harness.call("+79990000000", ["1"])  # an unknown number: no order, two rows
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        await wait_for(lambda: all_delivered(harness, 2), timeout=30)
        await write_transcript(harness, call_id, str(recordings / "none.wav"), [], TranscriptState.EMPTY)
        await wait_for(lambda: all_delivered(harness, 3), timeout=30)  # + transcript.ready
        assert [m for m in bitrix.methods() if m.startswith("telephony.")] == [
            "telephony.externalcall.register", "telephony.externalcall.finish"]
    finally:
        await harness.stop()


@pytest.mark.parametrize(("words", "messages"), [
    ([], []),
    # Mono (one mixed track, no speaker): all Client; a pause over 1.5 s starts a new phrase.
    ([TranscriptWord("алло", 0.4, 0.8, 1.0, 0, ""), TranscriptWord("да", 1.0, 1.2, 1.0, 0, ""),
      TranscriptWord("три", 4.0, 4.3, 1.0, 0, "")],
     [{"SIDE": "Client", "START_TIME": 0, "STOP_TIME": 2, "MESSAGE": "алло да"},
      {"SIDE": "Client", "START_TIME": 4, "STOP_TIME": 5, "MESSAGE": "три"}]),
    # The two tracks talking over each other: each word joins its own side's phrase in time order.
    ([TranscriptWord("нет", 2.0, 2.5, 1.0, 0, "caller"), TranscriptWord("скажите", 1.0, 2.2, 1.0, 1, "robot")],
     [{"SIDE": "User", "START_TIME": 1, "STOP_TIME": 3, "MESSAGE": "скажите"},
      {"SIDE": "Client", "START_TIME": 2, "STOP_TIME": 3, "MESSAGE": "нет"}]),
])
def test_transcript_messages(words: list[TranscriptWord], messages: list[dict]) -> None:
    assert transcript_messages(words) == messages


async def test_portal_down_then_back_every_call_arrives_once_in_order(store, prompts_dir, bitrix,
                                                                      recordings) -> None:
    harness = await start_bridge(store, prompts_dir, bitrix, recordings)
    try:
        with capture_logs() as logs:
            await bitrix.stop()  # unreachable: connection refused
            numbers = ["+79161234567", "+79031112233", "+79990000000"]
            for number in numbers:
                await harness.call(number, ["1"])
            outbox = harness.service.outbox
            assert outbox is not None

            async def tried_while_down() -> bool:
                return any(i.attempts >= 1 for i in await outbox.store.items())

            await wait_for(tried_while_down, timeout=20)
            bitrix.fail_with(503)  # back, but failing: 5xx
            await bitrix.start()
            await wait_for(lambda: len(bitrix.refused) >= 1, timeout=20)
            bitrix.fail_with(None)
            await wait_for(lambda: all_delivered(harness, 8), timeout=60)  # + the two orders
        assert len(bitrix.calls) == 3  # one register per call, however many attempts
        assert len(bitrix.deals) == 2 and all(d.rows for d in bitrix.deals.values())  # one deal per order
        assert sorted(c.register["PHONE_NUMBER"] for c in bitrix.calls.values()) == sorted(numbers)
        for remote in bitrix.calls:
            order = [m for m, p in bitrix.log if p.get("CALL_ID") == remote]
            assert order == ["telephony.externalcall.finish"]  # after its register, which made the id
        text = repr(logs) + repr(await outbox.store.items())
        assert bitrix.token not in text
        assert any(e["event"] == "crm.delivery_retry" for e in logs)
    finally:
        await harness.stop()


async def test_the_portals_rate_limit_slows_delivery_and_loses_nothing(store, prompts_dir, bitrix,
                                                                       recordings) -> None:
    # Our bucket above the portal's: the portal answers QUERY_LIMIT_EXCEEDED and we wait, uncounted.
    harness = await start_bridge(store, prompts_dir, bitrix, recordings)
    bucket = harness.service.outbox._buckets["bitrix24"]  # type: ignore[union-attr]
    bucket.rate = bucket.ceiling = 50.0  # as if configured above the portal's limit
    bucket.burst = 50
    try:
        for number in ["+79161234567", "+79031112233", "+79990000000", "+79161234567"]:
            await harness.call(number, ["1"])
        await wait_for(lambda: all_delivered(harness, 11), timeout=60)  # 4 calls × 2 + 3 orders
        assert len(bitrix.calls) == 4 and len(bitrix.deals) == 3
        assert bitrix.methods().count("crm.deal.add") == 3  # an order's deal is made once, whatever was refused
        assert bucket.rate < 50.0  # the portal's refusals slowed us down
        items = await harness.service.outbox.store.items()  # type: ignore[union-attr]
        if any(code == "QUERY_LIMIT_EXCEEDED" for _, code in bitrix.refused):
            assert max(i.attempts for i in items) <= 2  # a throttled try is not counted as a failure
    finally:
        await harness.stop()
