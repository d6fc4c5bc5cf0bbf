"""Composition root: the only module that knows every part and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_bridge.call_log import CallLog
from crm_bridge.connectors.amocrm import AmoCrmTarget, LeadSettings
from crm_bridge.connectors.base import Target
from crm_bridge.connectors.bitrix24 import Bitrix24Target, DealSettings
from crm_bridge.connectors.recording_links import RecordingLinks
from crm_bridge.connectors.webhook import WebhookTarget
from crm_bridge.contract.crm import EXPORTED, TargetKind
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import Reason
from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.delivery import DeliveryRules
from crm_bridge.dto import ProductView
from crm_bridge.outbox.backoff import Backoff
from crm_bridge.outbox.routing import OutboxRouting
from crm_bridge.outbox.store import OutboxStore
from crm_bridge.outbox.worker import DeliveryWorker
from crm_bridge.services import CrmStore, StoreConfig
from crm_bridge.sync import AmoCrmSource, Bitrix24Source, Retrying, SyncRunner, SyncSchedule, SyncStore
from crm_bridge.sync.report import SyncReport
from crm_bridge.sync.source import CrmSource
from crm_bridge.transcripts import TranscriptStore
from ivr import event_loop
from ivr.agi.admission import Admission, AdmissionLimits
from ivr.agi.server import FastAgiServer
from ivr.agi.shutdown import Shutdown
from ivr.ami.client import AmiClient
from ivr.calls.callback_request_call import CallbackRequestCall
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.calls.record_spool import RecordSpool
from ivr.calls.record_writer import RecordWriter
from ivr.calls.recording_mp3 import RecordingMp3
from ivr.calls.recordings import RecordingLocator
from ivr.calls.refused_call import RefusedCalls
from ivr.calls.repeat_order_call import CallConfig, RepeatOrderCall
from ivr.calls.screen_pop import OperatorBoard
from ivr.calls.tracker import CallTracker
from ivr.calls.voice import CallSpeech, QuestionServer, WordsFor
from ivr.cluster import asyncpg_dsn, is_postgres
from ivr.cluster.fanout import EventFanout
from ivr.cluster.leader import AmiOwnership
from ivr.database_gate import DatabaseGate, may_come_back, never_reachable, one_line, retry_until_ready
from ivr.flows.repeat_order import FlowConfig, RepeatOrderFlow
from ivr.settings import Settings, SpeechSettings
from ivr.speech.cpus import decoding_cpus, format_cpus, is_cpu_list
from ivr.speech.prompt_cache import PromptCache
from ivr.speech.speaker import Speaker
from ivr.speech.transcriber import Transcriber, model_source
from ivr.speech.tts import TtsEngine, engine_by_name
from ivr.speech.warmup import warm_dialplan_prompts, warm_prompts
from ivr.web.api import build_web_app
from ivr.web.console.deps import ConsoleDeps
from ivr.web.console.metrics import Metrics
from ivr.web.hardening import RedactingAccessLogger
from ivr.web.order_input import OrderLimits

log = structlog.get_logger("ivr.app")

WEB_SHUTDOWN_TIMEOUT = 2.0  # seconds a web request still running at stop may take
# A database that does not answer a ping in this long is "unreachable" at start (a blackholed host
# would otherwise hold the FastAGI listener for the driver's minute-long connect timeout).
DB_PING_TIMEOUT = 5.0


def store_config(settings: Settings) -> StoreConfig:
    d = settings.delivery
    return StoreConfig(
        vat_rates=settings.orders.vat_rates,
        prices_include_vat=settings.orders.prices_include_vat,
        invoice_prefix=settings.orders.invoice_prefix,
        order_prefix=settings.orders.order_prefix,
        delivery=DeliveryRules(
            cutoff=d.cutoff, days=d.days, holidays=d.holidays, window_start=d.window_start, window_end=d.window_end
        ),
        timezone=d.timezone,
        deals=settings.deals.pipeline(),
    )


def business_hours(settings: Settings) -> BusinessHours:
    h = settings.hours
    return BusinessHours(
        timezone=h.timezone, open=h.open, close=h.close, days=h.days, holidays=h.holidays,
        callback_delay_minutes=h.callback_delay_minutes,
    )


def build_store(settings: Settings) -> tuple[AsyncEngine, CrmStore]:
    engine = create_engine(settings.database.url, pool_size=settings.database.pool_size)
    return engine, CrmStore(session_factory(engine), store_config(settings))


def recording_links(settings: Settings) -> RecordingLinks | None:
    """Signed links to recordings (GET /r/<token>), when the CRM bridge is given a key and our address."""
    c = settings.crm
    if not (c.link_secret and c.public_url):
        return None
    return RecordingLinks(c.link_secret, c.public_url, c.link_hours * 3600)


def build_targets(settings: Settings) -> list[Target]:
    """The configured CRM targets (``[crm] targets``); a bad target setting stops the start-up."""
    targets: list[Target] = []
    c = settings.crm
    for name in c.targets:
        if name == TargetKind.WEBHOOK:
            w = settings.crm_webhook
            exported = frozenset(k.value for k in EXPORTED)
            kinds = frozenset(w.events) if w.events else exported
            if kinds - exported:
                raise StartupError(f"crm_webhook.events: {', '.join(sorted(kinds - exported))} is not an exported "
                                   f"event (known: {', '.join(sorted(exported))})")
            targets.append(WebhookTarget(name, w.url, w.secret, kinds=kinds, rate=w.rate, burst=w.burst,
                                         timeout=c.request_timeout))
        elif name == TargetKind.BITRIX24:
            b = settings.crm_bitrix24
            # The call's end: the tracker's hang-up (operator, talk time) with AMI, else the robot's end.
            finish_on = EventKind.CALL_HUNGUP if settings.ami.enabled else EventKind.CALL_ENDED
            targets.append(Bitrix24Target(
                name, b.webhook_url, default_user=b.default_user, users=b.users, crm_create=b.crm_create,
                line_number=b.line_number, finish_on=finish_on.value, links=recording_links(settings),
                rate=b.rate, burst=b.burst, timeout=c.request_timeout,
                deals=DealSettings(b.deal_stage, b.deal_lost_stage, b.deal_category) if b.deals else None,
            ))
        elif name == TargetKind.AMOCRM:
            a = settings.crm_amocrm
            finish_on = EventKind.CALL_HUNGUP if settings.ami.enabled else EventKind.CALL_ENDED
            targets.append(AmoCrmTarget(
                name, a.base_url, a.token, source=a.source, default_user=a.default_user, users=a.users,
                finish_on=finish_on.value, links=recording_links(settings),
                leads=LeadSettings(a.pipeline_id, a.status_id, a.lost_status_id) if a.leads else None,
                rate=a.rate, burst=a.burst, timeout=c.request_timeout,
            ))
        else:
            raise StartupError(f"crm.targets: unknown target {name!r} (known: {', '.join(TargetKind)})")
    return targets


def outbox_routing(targets: list[Target]) -> OutboxRouting | None:
    return OutboxRouting({t.name: t.kinds for t in targets}) if targets else None


def build_outbox_worker(settings: Settings, store: CrmStore, targets: list[Target]) -> DeliveryWorker:
    c = settings.crm
    return DeliveryWorker(
        OutboxStore(store.sessions), targets, max_attempts=c.max_attempts,
        backoff=Backoff(c.retry_min, c.retry_max), batch=c.batch, lease=c.lease, poll_interval=c.poll_interval,
    )


def build_record_writer(settings: Settings, store: CrmStore, outbox: OutboxRouting | None = None) -> RecordWriter:
    """The process's one call-record writer (group commit, spool while the database is down); with
    CRM targets, each batch enqueues their events in its own transaction."""
    r = settings.call_records
    return RecordWriter(
        CallLog(store.sessions, outbox=outbox, transcripts=settings.speech.transcripts, deals=store.config.deals),
        RecordSpool(Path(r.spool_dir)),
        max_backlog=r.max_backlog,
        max_batch=r.max_batch, write_timeout=r.write_timeout, retry_min=r.retry_min, retry_max=r.retry_max,
        linger=r.linger,
    )


def build_prompt_cache(settings: Settings, *, engine: TtsEngine | None = None) -> PromptCache:
    p = settings.prompts
    engine = engine or engine_by_name(p.engine, rate_wpm=p.rate, deadline=p.tts_deadline)
    return PromptCache(Path(p.dir), engine, {"ru": p.voice_ru, "en": p.voice_en},
                       max_bytes=p.cache_max_mb * 1024 * 1024, calls_dir=Path(p.calls_dir) if p.calls_dir else None,
                       composed_max_age=p.composed_max_age_days * 86400 if p.composed_max_age_days > 0 else None)


async def catalogue_products(store: CrmStore) -> list[ProductView]:
    """The catalogue's products, for the segment library; none when the database cannot say."""
    try:
        return await store.list_products(active_only=False)
    except Exception as exc:  # a fresh machine before `ivr db upgrade`: the demo products still come
        log.warning("prompts.products_unavailable", error=str(exc).splitlines()[0][:200])
        return []


async def _warm_prompts(
    cache: PromptCache, store: CrmStore, settings: Settings, database: DatabaseGate | None = None
) -> None:
    """At start, beside the calls: one TTS process at a time so calls keep the other core. With the
    database not there yet: the dialplan's named prompts now, the catalogue's once it answers."""
    if database is not None and not database.ready:
        await _warm_dialplan_prompts(cache, settings)
        await database.became_ready.wait()
    try:
        products = await catalogue_products(store)
        report = await warm_prompts(cache, products=products, max_quantity=settings.flow.max_quantity, concurrency=1,
                                    default_language=settings.flow.default_language)
        log.info("prompts.warm", units=report.units, synthesized=report.units_synthesized + report.static_synthesized,
                 named=len(report.named))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # calls still work: what is missing is synthesized on first use
        log.error("prompts.warm_failed", error=repr(exc))


@dataclass(frozen=True)
class Seams:
    """The few parts a test or the bench may put in place of the real ones. Everything else (the
    handlers, their deadlines and hours, the server, the writer, the order of start and stop) is wired
    here and only here, so a wiring mistake shows in the call-through tests too."""

    # The calls' view of the store: a test wraps it to make the database slow or stuck.
    call_store: Callable[[CrmStore], Any] | None = None
    tts: TtsEngine | None = None  # e.g. a TTS that fails, or a faster one
    clock: Callable[[], datetime] | None = None  # the handlers' wall clock (business hours, dates)
    # A timeline event off crm_bridge.contract.events raises instead of being logged: tests.
    strict_events: bool = False
    # CRM targets in place of those of ``[crm] targets`` (the bench runs three, one of them down).
    crm_targets: tuple[Target, ...] | None = None
    # The spoken phrases of a question in a language (ivr.speech.answers.question_words): the tests
    # give the words of the Korean test model, the only vosk model installable here.
    speech_words: WordsFor | None = None


async def _warm_dialplan_prompts(cache: PromptCache, settings: Settings) -> None:
    """With prompts.warm_at_start off: still the few files the dialplan plays by name (Asterisk
    skips a missing one in silence, so nothing else would ever make them)."""
    try:
        named = await warm_dialplan_prompts(cache, default_language=settings.flow.default_language)
        log.info("prompts.named_ready", named=len(named))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("prompts.named_failed", error=repr(exc))


@dataclass
class Service:
    """Everything `ivr serve` runs. Built by ``start_service``; ``stop()`` tears it down in the
    reverse order of its start, and so does a start-up that fails half-way."""

    settings: Settings
    engine: AsyncEngine
    store: CrmStore
    records: RecordWriter
    notifier: CallNotifier
    agi: FastAgiServer
    board: OperatorBoard
    tracker: CallTracker
    calls: RepeatOrderCall
    ami: AmiClient
    prompt_cache: PromptCache
    shutdown: Shutdown
    refused: RefusedCalls
    database: DatabaseGate
    _resources: contextlib.AsyncExitStack
    web_port: int | None = None
    web_app: web.Application | None = None
    # Several processes on one PostgreSQL (ivr/cluster): None = this process owns AMI alone.
    ami_ownership: AmiOwnership | None = None
    # The CRM bridge's delivery worker (None: no target configured); on PostgreSQL it runs in the one
    # process holding the outbox lock (outbox_ownership), so a target's rate limit holds cluster-wide.
    outbox: DeliveryWorker | None = None
    outbox_ownership: AmiOwnership | None = None
    # The pull from a CRM on an interval (None: sync.source = none); on PostgreSQL it runs in the one
    # process holding the sync lock (sync_ownership).
    sync: SyncSchedule | None = None
    sync_ownership: AmiOwnership | None = None
    fanout: EventFanout | None = None
    # Transcripts of recordings (speech.transcripts; None: off).
    transcriber: Transcriber | None = None
    # The background synthesis of everything a call may play (ivr.speech.warmup); done = steady state.
    prompts_warm: asyncio.Task[None] | None = None
    # Voice answers (speech.enabled or a model configured); None: every question by keys.
    speech: CallSpeech | None = None
    # Loading the vosk models at start, in a thread (callers use keys until a language's is loaded).
    speech_loading: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Drain the calls (``agi.drain_seconds``, then cut), write the last records, close the rest."""
        await self._resources.aclose()

    def health(self) -> dict[str, object]:
        ami = self.ami.health()
        # owner/standby: decided by the AMI lock among processes; local: one process, no lock needed.
        role = "local" if self.ami_ownership is None else self.ami_ownership.role
        if role == "standby":  # another process holds the AMI lock: healthy, just not the owner
            ami = {**ami, "status": "standby"}
        return {
            "agi": {"listening": self.agi.port is not None, "active_calls": self.agi.active_calls},
            "ami": ami,
            "worker": {"pid": os.getpid(), "ami": role, "ami_lock": self.ami_ownership is not None},
            "database": self.database.health(),
            "sync": self._sync_health(),
            "speech": self.speech.health() if self.speech is not None else {"status": "disabled"},
        }

    def _sync_health(self) -> dict[str, object] | None:
        if self.sync is None:
            return None
        role = "local" if self.sync_ownership is None else self.sync_ownership.role
        return {**self.sync.status().to_json(), "role": role}


class StartupError(OSError):
    """The service could not start (a port taken…); the message is the one line to show."""


async def start_service(settings: Settings, *, migrate: bool = True, seams: Seams = Seams()) -> Service:
    """Build and start the whole service; on any failure, what was started is stopped again."""
    resources = contextlib.AsyncExitStack()
    try:
        return await _start(resources, settings, migrate, seams)
    except BaseException:
        await resources.aclose()
        raise


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, *, migrate: bool = True, seams: Seams = Seams()
) -> AsyncIterator[Service]:
    """``async with running_service(settings) as service:`` — the service, stopped on the way out."""
    service = await start_service(settings, migrate=migrate, seams=seams)
    try:
        yield service
    finally:
        await service.stop()


async def _start(resources: contextlib.AsyncExitStack, settings: Settings, migrate: bool, seams: Seams) -> Service:
    """Start the parts in dependency order; each registers its own stop as it starts, so teardown
    runs in reverse: FastAGI (started last: a call is taken only once everything it needs is up)
    stops first and drains its calls while AMI, the web console and the database are still there."""
    engine, store = build_store(settings)  # connects lazily; a URL SQLAlchemy cannot load raises here
    resources.push_async_callback(engine.dispose)
    database = DatabaseGate()
    prepare = _database_preparation(settings, engine, migrate)
    await _open_database(database, prepare, settings)
    try:
        targets = list(seams.crm_targets) if seams.crm_targets is not None else build_targets(settings)
    except ValueError as exc:  # a target's URL or secret is malformed (the message holds no secret)
        raise StartupError(f"crm: {exc}") from exc
    routing = outbox_routing(targets)
    store.route_outbox(routing)  # operators' orders and corrections enqueue with their own change
    records = build_record_writer(settings, store, routing)
    records.start()  # replays a spool a previous run left behind
    # Written, or spooled for the next start; after every producer below has stopped.
    resources.push_async_callback(records.drain, settings.call_records.write_timeout)
    notifier = CallNotifier(records, strict=seams.strict_events)
    board = OperatorBoard(store, settings.operators.names)
    resources.push_async_callback(board.close)
    notifier.subscribe(board.on_event)
    # Prometheus metrics (GET /metrics): call ends and queue waits from the notifier, AGI command
    # latency from the FastAGI server's hook, TTS cache and active calls read at scrape time.
    metrics = Metrics()
    notifier.subscribe(metrics.listener)
    prompt_cache = build_prompt_cache(settings, engine=seams.tts)
    metrics.bind_prompt_cache(prompt_cache)
    metrics.bind_record_writer(records)
    hours = business_hours(settings)
    tracker = CallTracker(
        store,
        notifier,
        records=records,
        recordings=RecordingLocator(Path(settings.recordings.dir), settings.recordings.asterisk_dir or None),
        operator_names=settings.operators.names,
        hours=hours,
    )
    resources.push_async_callback(tracker.drain)
    # AMI is optional: without a username the client says so once and stays idle.
    link = _AmiLink(board, tracker)
    ami = AmiClient(settings.ami, tracker.handle, on_resync=tracker.resync, on_status=link.changed)
    resources.push_async_callback(ami.stop)
    link.ami = ami
    ownership, fanout = await _start_ami(resources, settings, ami, board, notifier)
    link.ownership = ownership
    board.watch_ami(link.status)
    shutdown = Shutdown()
    speech = await _start_speech(resources, settings, seams)
    calls, routes = build_calls(settings, store, records, notifier, prompt_cache, hours, shutdown, seams, speech)
    refused = RefusedCalls(records)
    # Until the database has answered once (and migrations ran), every call goes to an operator.
    routes = {script: database.guard(handler, lambda channel: refused(
        channel.env, "database", Reason.DATABASE_UNAVAILABLE, "database")) for script, handler in routes.items()}
    admission = build_admission(settings, records)
    metrics.bind_admission(admission)
    agi = FastAgiServer(
        routes,
        host=settings.agi.host,
        port=settings.agi.port,
        env_timeout=settings.agi.env_timeout,
        command_timeout=settings.agi.command_timeout,
        max_connections=settings.agi.max_connections,
        on_command=metrics.observe_agi,
        admission=admission,
        on_rejected=refused,
    )
    metrics.bind_agi_server(agi)
    service = Service(settings=settings, engine=engine, store=store, records=records, notifier=notifier, agi=agi,
                      board=board, tracker=tracker, ami=ami, calls=calls, prompt_cache=prompt_cache,
                      shutdown=shutdown, refused=refused, database=database, ami_ownership=ownership,
                      fanout=fanout, speech=speech, _resources=resources)
    if speech is not None:
        service.speech_loading = asyncio.get_running_loop().create_task(_load_speech(speech), name="speech-load")
        resources.push_async_callback(_cancel, service.speech_loading)
    if targets:
        # Always enqueue; deliver here unless a dedicated `ivr crm deliver` process does (crm.deliver).
        service.outbox = build_outbox_worker(settings, store, targets)
        if settings.crm.deliver:
            service.outbox_ownership = await start_outbox(resources, settings, service.outbox)
    if settings.sync.source != "none":
        pulls = SyncStore(store.sessions, store.config.deals)  # pulled orders get their deals in this pipeline
        service.sync = SyncSchedule(SyncRunner(pulls, build_sync_source(settings)), settings.sync.interval_minutes * 60)
        service.sync_ownership = await start_sync(resources, settings, service.sync)
    if settings.speech.transcripts:
        service.transcriber = start_transcriber(resources, settings, store, outbox_routing(targets), notifier)
    if settings.web.enabled:
        await _start_web(resources, service, metrics)
    # The last calls' rows and timelines, once no call runs any more (pushed before the server's stop,
    # so they run after it).
    drain = settings.agi.drain_seconds
    resources.push_async_callback(refused.drain, drain)
    resources.push_async_callback(calls.drain, drain)
    try:
        await agi.start()
    except OSError as exc:
        raise StartupError(f"FastAGI: cannot listen on {settings.agi.host}:{settings.agi.port}: {exc}") from exc
    resources.push_async_callback(_stop_agi, agi, drain, shutdown)
    if not database.ready:  # stopped first at stop: a half-run migration is rolled back with its transaction
        db = settings.database
        retry = asyncio.get_running_loop().create_task(
            retry_until_ready(database, prepare, retry_min=db.retry_min, retry_max=db.retry_max,
                              on_ready=records.retry_now), name="database-retry")
        resources.push_async_callback(_cancel, retry)
    log.info(
        "service_started",
        agi=f"{settings.agi.host}:{agi.port}",
        web=f"{settings.web.host}:{service.web_port}" if settings.web.enabled else None,
        database=safe_url(settings.database.url),
        database_ready=database.ready,  # False: calls go to operators until the retry gets through
        prompts=settings.prompts.dir,
        tts=settings.prompts.engine,
        ami=f"{settings.ami.host}:{settings.ami.port}" if settings.ami.enabled else "disabled",
        ami_lock=ownership is not None,
        drain_seconds=drain,
        event_loop=event_loop.name_of_running(),
        pid=os.getpid(),
    )
    # In the background either way: the dialplan's named prompts first, then (warm_at_start) the rest.
    warm = _warm_prompts(prompt_cache, store, settings, database) if settings.prompts.warm_at_start else \
        _warm_dialplan_prompts(prompt_cache, settings)
    service.prompts_warm = asyncio.get_running_loop().create_task(warm, name="prompts-warm")
    resources.push_async_callback(_cancel, service.prompts_warm)
    # Size and age limits of prompts.dir, on a quiet system too; the first sweep clears what a crash left.
    sweeps = asyncio.get_running_loop().create_task(prompt_cache.sweep_periodically(), name="prompts-sweep")
    resources.push_async_callback(_cancel, sweeps)
    return service


def _database_preparation(settings: Settings, engine: AsyncEngine, migrate: bool) -> Callable[[], Any]:
    """What must succeed before calls are taken: the database answers (bounded), then migrations."""

    async def prepare() -> None:
        async with asyncio.timeout(DB_PING_TIMEOUT):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        if migrate:
            await upgrade(settings.database.url)

    return prepare


async def _open_database(database: DatabaseGate, prepare: Callable[[], Any], settings: Settings) -> None:
    """The first try, before the listener opens. A database that is not there *yet* leaves the gate
    shut (the retry starts with the listener); a configuration error stops the start (one line)."""
    try:
        await prepare()
    except Exception as exc:
        where = safe_url(settings.database.url)
        if never_reachable(exc):  # see ivr.database_gate: a human must change the URL, role or database
            raise StartupError(f"database {where}: {one_line(exc)} (configuration error, not retried)") from exc
        if not may_come_back(exc):
            raise
        database.mark_unreachable(one_line(exc))
        log.warning("database.unavailable_at_start", database=where, error=one_line(exc),
                    retry_in=settings.database.retry_min)
        return
    database.mark_ready()


def speech_wanted(settings: Settings) -> bool:
    """The speech parts run when lines default to voice or a model is configured (a line may then
    turn voice on with IVR_SPEECH=1)."""
    s = settings.speech
    return s.enabled or bool(s.model_ru or s.model_en)


async def _start_speech(resources: contextlib.AsyncExitStack, settings: Settings, seams: Seams) -> CallSpeech | None:
    """The AudioSocket listener and the models (loaded later, in the background), in the speech
    process (``speech.own_process``) or in this one. A port that cannot be had is one error line:
    the calls go on with keys, the service starts."""
    s = settings.speech
    if not speech_wanted(settings):
        log.info("speech.disabled", reason="speech.enabled is false and no model is configured")
        return None
    server = await (_speech_process(resources, settings) if s.own_process else _speech_inline(resources, s))
    if server is None:
        return None
    # Asterisk connects to the address we listen on unless told otherwise (Asterisk on another host,
    # a listener on every interface); a wildcard listener is reached on loopback.
    host = s.audiosocket_host if s.audiosocket_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    target = s.audiosocket_address or f"{host}:{server.port}"
    cpus = decoding_cpus(s.recognizer_cpus)
    if cpus is None and is_cpu_list(s.recognizer_cpus):
        log.warning("speech.recognizer_cpus_unusable: decoding runs on every CPU", recognizer_cpus=s.recognizer_cpus,
                    usable=format_cpus(os.sched_getaffinity(0)))
    return CallSpeech(server, default_on=s.enabled, asterisk_target=target,
                      min_confidence=s.min_confidence, max_quantity=settings.flow.max_quantity,
                      endpoint_silence=s.endpoint_silence, silence_level=s.silence_level, words=seams.speech_words,
                      decoding_cpus=format_cpus(cpus))


async def _speech_process(resources: contextlib.AsyncExitStack, settings: Settings) -> QuestionServer | None:
    from ivr.audiosocket.process import SpeechProcess, SpeechProcessUnavailable

    process = SpeechProcess(settings.speech, log_level=settings.log.level, log_json=settings.log.json)
    try:
        await process.start()
    except (SpeechProcessUnavailable, OSError) as exc:
        log.error("speech.process_unavailable: callers answer with keys", error=str(exc))
        return None
    resources.push_async_callback(process.close)
    return process


async def _speech_inline(resources: contextlib.AsyncExitStack, s: SpeechSettings) -> QuestionServer | None:
    from ivr.audiosocket.server import AudioSocketServer
    from ivr.speech.recognizer import SpeechModels

    models = SpeechModels(s)
    resources.callback(models.close)
    server = AudioSocketServer(s.audiosocket_host, s.audiosocket_port, models)
    try:
        await server.start()
    except OSError as exc:
        log.error("speech.audiosocket_unavailable: callers answer with keys",
                  address=f"{s.audiosocket_host}:{s.audiosocket_port}", error=str(exc))
        return None
    resources.push_async_callback(server.close)
    return server


async def _load_speech(speech: CallSpeech) -> None:
    await speech.server.load_models()
    log.info("speech.ready", default="on" if speech.default_on else "off", audiosocket=speech.asterisk_target,
             decoding_cpus=speech.decoding_cpus,
             **{f"model_{language}": state for language, state in speech.server.models_health().items()})


def build_calls(
    settings: Settings, store: CrmStore, records: RecordWriter, notifier: CallNotifier, prompt_cache: PromptCache,
    hours: BusinessHours, shutdown: Shutdown, seams: Seams = Seams(), speech: CallSpeech | None = None,
) -> tuple[RepeatOrderCall, dict[str, Any]]:
    """The FastAGI handlers and their routes (script name -> handler)."""
    call_store = seams.call_store(store) if seams.call_store is not None else store
    clock = seams.clock or (lambda: datetime.now(UTC))
    speaker = Speaker(
        prompt_cache,
        asterisk_dir=settings.agi.asterisk_prompts_dir or None,
        deadline=settings.prompts.tts_deadline,
        text_sidecars=settings.prompts.text_sidecars,
    )
    f = settings.flow
    flow = RepeatOrderFlow(
        FlowConfig(
            max_attempts=f.max_attempts,
            max_quantity=f.max_quantity,
            menu_timeout=f.menu_timeout,
            quantity_timeout=f.quantity_timeout,
            open_hour=settings.hours.open.hour,
            close_hour=settings.hours.close.hour,
        )
    )
    repeat_order = RepeatOrderCall(
        flow=flow,
        store=call_store,
        records=records,
        speaker=speaker,
        notifier=notifier,
        config=CallConfig(
            db_deadline=settings.database.call_deadline,
            order_deadline=settings.database.order_deadline,
            hours=hours,
            default_language=f.default_language,
            timezone=settings.delivery.timezone,
            window_start=settings.delivery.window_start,
            window_end=settings.delivery.window_end,
            media_slack=settings.agi.media_slack,
            max_silence=f.max_silence,
        ),
        clock=clock,
        shutdown=shutdown,
        speech=speech,
    )
    callback = CallbackRequestCall(
        store=call_store,
        speaker=speaker,
        notifier=notifier,
        hours=hours,
        db_deadline=settings.database.call_deadline,
        max_silence=f.max_silence,
        media_slack=settings.agi.media_slack,
        default_language=f.default_language,
        clock=clock,
        shutdown=shutdown,
    )
    return repeat_order, {"repeat-order": repeat_order, "callback-request": callback}


def build_admission(settings: Settings, records: RecordWriter) -> Admission:
    a = settings.agi
    admission = Admission(
        AdmissionLimits(
            max_call_rate=a.max_call_rate, call_burst=a.call_burst, max_calls=a.max_connections,
            max_loop_lag=a.max_loop_lag, max_record_backlog=a.max_record_backlog,
        )
    )
    admission.bind_record_backlog(lambda: records.backlog)
    return admission


class _AmiLink:
    """The AMI status the operator pages show ("standby": another process owns AMI, see ivr/cluster),
    pushed to the board's feeds on every change; the members' states go stale with the link."""

    def __init__(self, board: OperatorBoard, tracker: CallTracker) -> None:
        self._board = board
        self._tracker = tracker
        self.ami: AmiClient | None = None
        self.ownership: AmiOwnership | None = None

    def status(self) -> str:
        if self.ownership is not None and self.ownership.role == "standby":
            return "standby"
        return self.ami.status if self.ami is not None else "disabled"

    def changed(self, status: str) -> None:
        if status != "connected":
            self._tracker.forget_members()
        self._board.ami_changed()


async def _start_ami(
    resources: contextlib.AsyncExitStack, settings: Settings, ami: AmiClient, board: OperatorBoard,
    notifier: CallNotifier,
) -> tuple[AmiOwnership | None, EventFanout | None]:
    """AMI alone, or, with PostgreSQL and AMI configured, through the lock shared by every process."""
    if not (settings.ami.enabled and is_postgres(settings.database.url)):
        await ami.start()
        return None, None
    # Possibly one of several processes: AMI goes to the holder of the advisory lock, and board
    # events cross processes so a screen pop reaches the operator's WebSocket on any of them.
    dsn = asyncpg_dsn(settings.database.url)
    fanout = EventFanout(dsn, board.on_event)
    notifier.subscribe(fanout.publish)
    ownership = AmiOwnership(dsn, on_acquired=ami.start, on_lost=ami.stop)
    await fanout.start()
    resources.push_async_callback(fanout.stop)
    await ownership.start()
    resources.push_async_callback(ownership.stop)  # stops AMI first if we own it, then frees the lock
    return ownership, fanout


def build_transcriber(settings: Settings, store: CrmStore, outbox: OutboxRouting | None) -> Transcriber:
    """The transcription worker; its transcript.ready events go straight to the store (with the CRM
    targets' outbox rows) before each row is settled, not through the record writer's memory queue."""
    sp = settings.speech
    return Transcriber(
        TranscriptStore(store.sessions), CallLog(store.sessions, outbox=outbox).write,
        model_source(sp.model_ru, sp.model_en, sp.model_transcripts, sp.transcripts_language, sp.endpoint_silence),
        RecordingLocator(Path(settings.recordings.dir), settings.recordings.asterisk_dir or None),
        workers=sp.transcribe_workers, max_seconds=sp.transcribe_max_seconds,
    )


def start_transcriber(resources: contextlib.AsyncExitStack, settings: Settings, store: CrmStore,
                      outbox: OutboxRouting | None, notifier: CallNotifier) -> Transcriber:
    """Every process runs one (rows are claimed with SKIP LOCKED / the SQLite writer lock, so several
    never take the same file); a recording announced here is looked at a moment later, once the record
    writer has committed its pending row, instead of at the next poll."""
    transcriber = build_transcriber(settings, store, outbox)
    transcriber.start()
    resources.push_async_callback(transcriber.stop)
    loop = asyncio.get_running_loop()

    def announced(event: Any) -> None:
        if event.kind == EventKind.RECORDING_READY:
            loop.call_later(settings.call_records.linger + 1.0, transcriber.wake)

    notifier.subscribe(announced)
    return transcriber


class Singleton(Protocol):
    """A background job one process of a deployment runs (the outbox's deliveries, the CRM pull)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


# Fixed, like the AMI lock: every `ivr` process on the database competes for it. ("ivr-out" in ASCII.)
OUTBOX_LOCK_KEY = 0x6976_722D_6F75_74


async def start_in_one_process(resources: contextlib.AsyncExitStack, settings: Settings, job: Singleton, *,
                               key: int, lock: str) -> AmiOwnership | None:
    """``job`` started here on SQLite (one process), or on PostgreSQL in whichever process of the
    deployment holds the advisory lock ``key`` (started when this one gets it, stopped if it loses it)."""
    if not is_postgres(settings.database.url):
        job.start()
        resources.push_async_callback(job.stop)
        return None

    async def acquired() -> None:
        job.start()

    ownership = AmiOwnership(asyncpg_dsn(settings.database.url), on_acquired=acquired, on_lost=job.stop,
                             key=key, logger=structlog.get_logger("ivr.cluster").bind(lock=lock))
    await ownership.start()
    resources.push_async_callback(ownership.stop)
    return ownership


async def start_outbox(resources: contextlib.AsyncExitStack, settings: Settings,
                       worker: DeliveryWorker) -> AmiOwnership | None:
    """The delivery worker: alone on SQLite, or in the one process holding the outbox lock on PostgreSQL
    (the rows are claimed with SKIP LOCKED anyway, so a hand-over never delivers a row twice)."""
    return await start_in_one_process(resources, settings, worker, key=OUTBOX_LOCK_KEY, lock="outbox")


def build_sync_source(settings: Settings, name: str | None = None) -> CrmSource:
    """The CRM the sync reads (``sync.source``, or ``name`` for `ivr sync <name>`), with its credentials
    from its own section; a missing or malformed one stops the start with a line naming the key."""
    name = name or settings.sync.source
    s = settings.sync
    retrying = Retrying(retries=s.retries)
    try:
        if name == "bitrix24":
            b = settings.crm_bitrix24
            if not b.webhook_url:
                raise ValueError("crm_bitrix24.webhook_url is empty (an incoming webhook with the crm scope)")
            return Bitrix24Source(b.webhook_url, rate=b.rate, burst=b.burst, timeout=s.request_timeout,
                                  retrying=retrying, region=s.region)
        if name == "amocrm":
            a = settings.crm_amocrm
            if not a.base_url:
                raise ValueError("crm_amocrm.base_url is empty")
            return AmoCrmSource(a.base_url, a.token, timeout=s.request_timeout, retrying=retrying, region=s.region)
    except ValueError as exc:  # the message holds no secret (the sources scrub the URL they quote)
        raise StartupError(f"sync: {exc}") from exc
    raise StartupError(f"sync.source: unknown CRM {name!r} (none, bitrix24 or amocrm)")


# Fixed, like the AMI and outbox locks: one process of a deployment pulls from the CRM. ("ivr-syn")
SYNC_LOCK_KEY = 0x6976_722D_7379_6E


async def start_sync(resources: contextlib.AsyncExitStack, settings: Settings,
                     schedule: SyncSchedule) -> AmiOwnership | None:
    """The schedule alone on SQLite, or in the one process holding the sync lock on PostgreSQL (two
    processes pulling at once would race on the same external refs and double the CRM's load)."""
    ownership = await start_in_one_process(resources, settings, schedule, key=SYNC_LOCK_KEY, lock="sync")
    if ownership is not None:
        resources.push_async_callback(schedule.runner.source.close)  # a standby never started it
    return ownership


async def sync_once(settings: Settings, name: str, *, full: bool) -> SyncReport:
    """`ivr sync <crm> [--full]`: one run, the report returned to print. On PostgreSQL it takes the
    sync lock first and refuses to run beside a service that is pulling."""
    source = build_sync_source(settings, name)
    engine, store = build_store(settings)
    lock = None
    try:
        if is_postgres(settings.database.url):
            import asyncpg

            lock = await asyncpg.connect(asyncpg_dsn(settings.database.url))
            if not await lock.fetchval("SELECT pg_try_advisory_lock($1::bigint)", SYNC_LOCK_KEY):
                raise StartupError("sync: another ivr process is pulling from the CRM now (it holds the sync "
                                   "lock); try again when it is done")
        return await SyncRunner(SyncStore(store.sessions, store.config.deals), source).run(full=full)
    finally:
        if lock is not None:
            await lock.close()  # the session's end frees the lock
        await source.close()
        await engine.dispose()


async def deliver_forever(settings: Settings) -> None:
    """`ivr crm deliver`: only the delivery worker, beside `ivr serve` processes set to
    ``crm.deliver = false`` (the calls' processes then spend nothing on delivering)."""
    if not settings.crm.targets:
        raise StartupError("crm.targets is empty: nothing to deliver")
    async with contextlib.AsyncExitStack() as resources:
        engine, store = build_store(settings)
        resources.push_async_callback(engine.dispose)
        try:
            targets = build_targets(settings)
        except ValueError as exc:
            raise StartupError(f"crm: {exc}") from exc
        await start_outbox(resources, settings, build_outbox_worker(settings, store, targets))
        log.info("crm.deliverer_started", targets=[t.name for t in targets], pid=os.getpid())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


async def _start_web(resources: contextlib.AsyncExitStack, service: Service, metrics: Metrics) -> None:
    settings = service.settings
    console = ConsoleDeps(
        store=service.store,
        board=service.board,
        tracker=service.tracker,
        recordings_dir=Path(settings.recordings.dir),
        health=service.health,
        service_level_seconds=settings.web.service_level_seconds,
        cookie_secure=settings.web.cookie_secure,
        session_hours=settings.web.session_hours,
        timezone=settings.hours.timezone,  # the business time zone: every date and time the console shows
        metrics=metrics,
        database=service.database,
        seller=settings.seller,
        outbox=service.outbox.store if service.outbox is not None else None,
        outbox_targets=tuple(service.outbox.targets) if service.outbox is not None else (),
        recording_links=recording_links(settings),
        recording_mp3=RecordingMp3(Path(settings.recordings.mp3_cache_dir), settings.recordings.mp3_cache_mb),
    )
    try:
        web_app = build_web_app(service.store, api_token=settings.web.api_token, board=service.board,
                                console=console, order_limits=OrderLimits.from_settings(settings),
                                trusted_proxies=settings.web.trusted_proxies)
    except ValueError as exc:  # a web.trusted_proxies entry that is no address
        raise StartupError(str(exc)) from exc
    # A request still running at stop gets this long; open operator feeds are closed at once
    # (ivr.web.operator_api), so nothing holds the stop for aiohttp's default minute.
    runner = web.AppRunner(web_app, shutdown_timeout=WEB_SHUTDOWN_TIMEOUT, access_log_class=RedactingAccessLogger)
    await runner.setup()
    resources.push_async_callback(runner.cleanup)
    # reuse_port: every worker (`ivr serve --workers N`) listens on the same port; the kernel spreads.
    site = web.TCPSite(runner, settings.web.host, settings.web.port, reuse_port=True)
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(f"web console: cannot listen on {settings.web.host}:{settings.web.port}: {exc}") from exc
    sockets = site._server.sockets if site._server else ()  # the real port when 0 was asked for
    service.web_port = sockets[0].getsockname()[1] if sockets else settings.web.port
    service.web_app = web_app


async def _stop_agi(agi: FastAgiServer, drain: float, shutdown: Shutdown) -> None:
    log.info("service_stopping", active_calls=agi.active_calls, drain_seconds=drain)
    await agi.stop(drain, on_cut=shutdown.cut_calls)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def serve_forever(
    settings: Settings, *, migrate: bool = True, on_started: Callable[[], None] | None = None,
    once_database_ready: Callable[[], Awaitable[str | None]] | None = None,
) -> str | None:
    """Serve until SIGINT/SIGTERM. ``once_database_ready``: a check that needed the database and
    could not run at start (cli: the demo passwords of an exposed console); when the database has
    answered it runs, and a line it returns stops the service and is returned (else None)."""
    refusal: list[str] = []
    async with running_service(settings, migrate=migrate) as service:
        if on_started is not None:  # the supervisor of `ivr serve --workers N` waits for this
            on_started()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        checker: asyncio.Task[None] | None = None
        if once_database_ready is not None:
            check = once_database_ready

            async def late_check() -> None:
                await service.database.became_ready.wait()
                line = await check()
                if line:
                    refusal.append(line)
                    stop.set()

            checker = loop.create_task(late_check(), name="late-check")
        try:
            await stop.wait()
        finally:
            if checker is not None:
                await _cancel(checker)
    return refusal[0] if refusal else None


def safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"
