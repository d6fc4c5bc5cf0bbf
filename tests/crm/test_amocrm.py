"""amoCRM / Kommo, against the local fake account: a whole call lands in the call log of the caller's
contact with our recording link, its order as a lead with a note of its lines; amoCRM's error forms
become the outbox's answers (401 retried, 429 waited out uncounted, 400 validation-errors a dead
letter); its token never shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from structlog.testing import capture_logs

from crm_bridge.call_log import CallEnd, TimelineRecord
from crm_bridge.connectors.amocrm import AmoCrmTarget, LeadSettings
from crm_bridge.connectors.recording_links import RecordingLinks
from crm_bridge.contract.crm import OutboxState
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from crm_bridge.models import Call, Transcript
from crm_bridge.outbox.store import OutboxStore
from crm_bridge.sync.store import SyncStore
from crm_bridge.transcripts import TranscriptState, TranscriptStore, event_uid, pending_row
from ivr.app import Seams, start_service
from tests.calls.harness import CallHarness, database_url, harness_settings, wait_for
from tests.console.conftest import PASSWORD, add_role_users, login, make_console_app, start_client
from tests.crm.fake_amocrm import FakeAmoCrm
from tests.crm.rig import Clock, drain, enqueue, make_worker, start_of
from tests.crm.test_bitrix24_calls import LINK_SECRET, WORDS, all_delivered, free_port

LINKS = RecordingLinks(LINK_SECRET, "http://ivr.example", 3600)


def amo_target(fake: FakeAmoCrm, rate: float = 1000.0, *, leads: bool = True) -> AmoCrmTarget:
    return AmoCrmTarget("amocrm", fake.base_url, fake.token, source="ivr-test", default_user=42,
                        users={"PJSIP/101": "8123"}, finish_on="call.ended", links=LINKS,
                        leads=LeadSettings(pipeline_id=7, status_id=701) if leads else None,
                        rate=rate, burst=max(1, int(rate)), timeout=2.0)


async def one_call(store, target: AmoCrmTarget, call_id: str = "c1", outcome: str = "abandoned_in_ivr") -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    await enqueue(store, [target], [
        start_of(call_id),
        TimelineRecord(at=t0, call_id=call_id, customer_id=None, kind="call.started", data={}),
        CallEnd(call_id=call_id, facts=facts_implying(outcome), reason="hangup_at_menu",
                ended_at=t0 + timedelta(seconds=42)),
        TimelineRecord(at=t0 + timedelta(seconds=42), call_id=call_id, customer_id=None, kind="call.ended",
                       data={"outcome": outcome}),
    ])


async def test_a_whole_call_is_logged_on_the_contact_and_its_order_is_a_lead_with_a_note(store, prompts_dir,
                                                                                         amocrm) -> None:
    await load_demo_data(store.sessions)
    contact = amocrm.add_contact("+79161234567")
    port = free_port()
    settings = harness_settings(
        database_url(store), prompts_dir, web={"enabled": True, "host": "127.0.0.1", "port": port},
        crm={"targets": ["amocrm"], "retry_min": 0.2, "retry_max": 1.0, "poll_interval": 0.05,
             "request_timeout": 2.0, "public_url": f"http://127.0.0.1:{port}", "link_secret": LINK_SECRET},
        crm_amocrm={"base_url": amocrm.base_url, "token": amocrm.token, "default_user": 42,
                    "pipeline_id": 7, "status_id": 701},
    )
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True))
    harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
    try:
        fake = await harness.call("+79161234567", ["1"])
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        await wait_for(lambda: all_delivered(harness, 2), timeout=30)  # order.created, call.ended
        [call] = amocrm.calls
        assert (call["uniq"], call["direction"], call["phone"], call["source"]) == (
            call_id, "inbound", "+79161234567", "ivr")
        assert (call["call_status"], call["call_result"], call["created_by"]) == (4, "Робот принял заказ", 42)
        assert isinstance(call["duration"], int) and call["duration"] >= 0
        token = call["link"].removeprefix(f"http://127.0.0.1:{port}/r/")
        assert RecordingLinks(LINK_SECRET, "x", 1).call_id(token) == call_id  # one call's recording, signed
        [lead] = amocrm.leads.values()
        order_id = lead.fields["name"].removeprefix("Заказ ")
        assert (lead.fields["price"], lead.fields["pipeline_id"], lead.fields["status_id"]) == (1400, 7, 701)
        assert lead.fields["_embedded"]["contacts"] == [{"id": contact}]
        [(lead_id, _)] = amocrm.leads.items()
        assert await SyncStore(store.sessions).refs("amocrm", "deal") == {str(lead_id): order_id}
        [note] = lead.notes
        assert f"Заказ {order_id}" in note and "бутылка воды «Жемчужная роса» 19 л: 4 × 350.00 ₽" in note
        assert "Итого: 1400.00 ₽" in note
        # A first attempt makes the lead at once (a retry looks it up first), the order before the call.
        assert "GET /api/v4/leads" not in amocrm.log
        assert amocrm.log.index("POST /api/v4/leads") < amocrm.log.index("POST /api/v4/calls")
    finally:
        await harness.stop()


async def test_a_calls_transcript_is_a_note_on_the_contact_the_call_was_filed_in(store, amocrm) -> None:
    contact = amocrm.add_contact("+79161234567")
    target = amo_target(amocrm)
    await one_call(store, target)
    async with store.sessions() as session:  # what the transcriber leaves (crm_bridge.transcripts)
        session.add(Transcript(**pending_row("c1", "/rec/c1.wav", datetime.now(UTC))))
        await session.commit()
    transcripts = TranscriptStore(store.sessions)
    [job] = await transcripts.claim(datetime.now(UTC), limit=1, lease=60)
    assert await transcripts.finish(job, datetime.now(UTC), state=TranscriptState.DONE, text="…", words=WORDS,
                                    channels=2)
    await enqueue(store, [target], [TimelineRecord(
        at=datetime.now(UTC), call_id="c1", customer_id=None, kind="transcript.ready",
        data={"transcript_id": job.id, "state": "done", "words": len(WORDS), "text": "…"}, uid=event_uid(job.id))])
    clock = Clock()
    await drain(make_worker(store, [target], clock), clock)
    assert amocrm.contact_notes == {contact: ["Расшифровка звонка\n"
                                              "[0:00] Робот/оператор: здравствуйте алексей сергеевич\n"
                                              "[0:03] Клиент: да повторить\n"
                                              "[0:05] Робот/оператор: заказ принят\n"
                                              "[0:08] Робот/оператор: до свидания\n"
                                              "[0:09] Клиент: спасибо"]}
    assert amocrm.log == ["POST /api/v4/calls", f"POST /api/v4/contacts/{contact}/notes"]


async def test_an_expired_token_is_retried_and_its_value_never_shows(store, amocrm) -> None:
    amocrm.add_contact("+79161234567")
    target = amo_target(amocrm)
    await one_call(store, target)
    clock = Clock()
    worker = make_worker(store, [target], clock)
    amocrm.revoke()
    with capture_logs() as logs:
        await worker.run_once("amocrm")
        [row] = await worker.store.items()
        assert (row.state, row.attempts) == (OutboxState.PENDING, 1) and "HTTP 401" in (row.last_error or "")
        amocrm.revoke(False)
        await drain(worker, clock)
    [call] = amocrm.calls
    assert (call["call_status"], call["created_by"], call["duration"]) == (3, 42, 42)  # nobody served: 3
    text = repr(logs) + repr(await worker.store.items()) + target.address
    assert amocrm.token not in text


async def test_the_accounts_limit_is_waited_out_without_counting(store, amocrm) -> None:
    for n in range(12):
        amocrm.add_contact(f"+7916000{n:04d}")
    target = amo_target(amocrm)  # our limit far above the account's 7/s
    for n in range(12):
        await one_call(store, target, f"c{n}")
    async with store.sessions() as session:  # each call its own number
        for n in range(12):
            await session.execute(update(Call).where(Call.call_id == f"c{n}")
                                  .values(normalized_number=f"+7916000{n:04d}"))
        await session.commit()
    clock = Clock()
    worker = make_worker(store, [target], clock)
    await worker.run_once("amocrm")
    assert any(status == 429 for _, status in amocrm.refused)
    items = await worker.store.items()
    assert all(i.attempts <= 1 for i in items)
    assert any(i.attempts == 0 and "HTTP 429" in (i.last_error or "") for i in items)  # given back
    await drain(worker, clock)
    assert sorted(c["uniq"] for c in amocrm.calls) == sorted(f"c{n}" for n in range(12))  # each once


async def test_a_validation_error_is_a_dead_letter_with_the_fields_named(store, amocrm) -> None:
    target = amo_target(amocrm)
    await one_call(store, target)
    async with store.sessions() as session:  # a call without any number: amoCRM's phone is NotBlank
        await session.execute(update(Call).where(Call.call_id == "c1").values(normalized_number=None,
                                                                              caller_number=None))
        await session.commit()
    worker = make_worker(store, [target], Clock())
    await worker.run_once("amocrm")
    await worker.stop()
    [row] = await worker.store.items()
    assert (row.state, row.attempts) == (OutboxState.DEAD, 1)
    assert "HTTP 400" in (row.last_error or "") and "phone: NotBlank" in (row.last_error or "")


async def test_a_call_from_a_number_no_card_owns_is_delivered_and_said_once(store, amocrm) -> None:
    target = amo_target(amocrm)
    await one_call(store, target)
    clock = Clock()
    worker = make_worker(store, [target], clock)
    with capture_logs() as logs:
        await drain(worker, clock)
    assert amocrm.calls == [] and len(amocrm.unmatched) == 1
    assert [e["event"] for e in logs if e["event"] == "crm.amocrm_call_unmatched"] == ["crm.amocrm_call_unmatched"]


async def test_three_targets_one_of_them_down_the_call_goes_on_and_the_others_get_everything(
        store, prompts_dir, amocrm, bitrix, webhook) -> None:
    await load_demo_data(store.sessions)
    await amocrm.stop()  # amoCRM unreachable for the whole call
    settings = harness_settings(
        database_url(store), prompts_dir,
        crm={"targets": ["webhook", "bitrix24", "amocrm"], "retry_min": 30.0, "retry_max": 60.0,
             "poll_interval": 0.05, "request_timeout": 2.0},
        crm_webhook={"url": webhook.url, "secret": webhook.secret},
        crm_bitrix24={"webhook_url": bitrix.webhook_url},
        crm_amocrm={"base_url": amocrm.base_url, "token": amocrm.token},
    )
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True))
    harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
    try:
        with capture_logs() as logs:
            fake = await harness.call("+79161234567", ["1"])
            assert fake.variables["IVR_RESULT"] == "done"  # the robot took the order as ever
            outbox = harness.service.outbox
            assert outbox is not None

            async def others_delivered() -> bool:
                items = await outbox.store.items()
                return all(i.state == OutboxState.DELIVERED for i in items if i.target != "amocrm") and \
                    any(i.target == "amocrm" and i.attempts >= 1 for i in items)

            await wait_for(others_delivered, timeout=30)
        assert len(bitrix.calls) == 1 and len(bitrix.deals) == 1
        assert {e["kind"] for e in webhook.received} >= {"call.started", "order.created", "call.ended"}
        amo_rows = [i for i in await outbox.store.items() if i.target == "amocrm"]
        assert {i.kind for i in amo_rows} == {"order.created", "call.ended"}
        assert all(i.state == OutboxState.PENDING for i in amo_rows)  # waiting for its backoff, not lost
        assert amocrm.token not in repr(logs) + repr(amo_rows)
    finally:
        await harness.stop()


async def test_the_token_quoted_back_by_the_crm_never_reaches_the_console(store, amocrm) -> None:
    amocrm.leaky = True
    target = amo_target(amocrm)
    await one_call(store, target)
    async with store.sessions() as session:  # no number: a 400 whose detail quotes our header
        await session.execute(update(Call).where(Call.call_id == "c1").values(normalized_number=None,
                                                                              caller_number=None))
        await session.commit()
    worker = make_worker(store, [target], Clock())
    await worker.run_once("amocrm")
    await worker.stop()
    [dead] = await worker.store.dead_letters()
    assert "Bearer ***" in (dead.last_error or "") and amocrm.token not in (dead.last_error or "")
    app = make_console_app(store, outbox=OutboxStore(store.sessions))
    await add_role_users(app)
    client = await start_client(app)
    try:
        await login(client, "adm1", PASSWORD)
        page = await (await client.get("/admin/crm")).text()
        assert "amocrm" in page and "HTTP 400" in page and amocrm.token not in page
    finally:
        await client.close()
