"""Composition root: the only module that knows every part and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_bridge.call_log import CallLog
from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.delivery import DeliveryRules
from crm_bridge.dto import ProductView
from crm_bridge.phones import normalize_phone
from crm_bridge.services import CrmStore, StoreConfig
from ivr.agi.admission import Admission, AdmissionLimits
from ivr.agi.server import FastAgiServer
from ivr.ami.client import AmiClient
from ivr.calls.callback_request_call import CallbackRequestCall
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.calls.record_spool import RecordSpool
from ivr.calls.record_writer import RecordWriter
from ivr.calls.recordings import RecordingLocator
from ivr.calls.refused_call import RefusedCalls
from ivr.calls.repeat_order_call import CallConfig, RepeatOrderCall
from ivr.calls.screen_pop import OperatorBoard
from ivr.calls.tracker import CallTracker
from ivr.cluster import asyncpg_dsn, is_postgres
from ivr.cluster.fanout import EventFanout
from ivr.cluster.leader import AmiOwnership
from ivr.flows.repeat_order import FlowConfig, RepeatOrderFlow
from ivr.settings import Settings
from ivr.speech.prompt_cache import PromptCache
from ivr.speech.speaker import Speaker
from ivr.speech.tts import engine_by_name
from ivr.speech.warmup import warm_dialplan_prompts, warm_prompts
from ivr.web.api import build_web_app
from ivr.web.console.deps import ConsoleDeps
from ivr.web.console.metrics import Metrics

log = structlog.get_logger("ivr.app")


def store_config(settings: Settings) -> StoreConfig:
    d = settings.delivery
    return StoreConfig(
        vat_rate=settings.orders.vat_rate,
        prices_include_vat=settings.orders.prices_include_vat,
        invoice_prefix=settings.orders.invoice_prefix,
        order_prefix=settings.orders.order_prefix,
        delivery=DeliveryRules(
            cutoff=d.cutoff, days=d.days, holidays=d.holidays, window_start=d.window_start, window_end=d.window_end
        ),
        timezone=d.timezone,
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


def build_record_writer(settings: Settings, store: CrmStore) -> RecordWriter:
    """The process's one call-record writer (group commit, spool while the database is down)."""
    r = settings.call_records
    return RecordWriter(
        CallLog(store.sessions), RecordSpool(Path(r.spool_dir)), max_backlog=r.max_backlog,
        max_batch=r.max_batch, write_timeout=r.write_timeout, retry_min=r.retry_min, retry_max=r.retry_max,
    )


def build_prompt_cache(settings: Settings) -> PromptCache:
    p = settings.prompts
    engine = engine_by_name(p.engine, rate_wpm=p.rate, deadline=p.tts_deadline)
    return PromptCache(Path(p.dir), engine, {"ru": p.voice_ru, "en": p.voice_en},
                       max_bytes=p.cache_max_mb * 1024 * 1024, calls_dir=Path(p.calls_dir) if p.calls_dir else None)


async def catalogue_products(store: CrmStore) -> list[ProductView]:
    """The catalogue's products, for the segment library; none when the database cannot say."""
    try:
        return await store.list_products(active_only=False)
    except Exception as exc:  # a fresh machine before `ivr db upgrade`: the demo products still come
        log.warning("prompts.products_unavailable", error=str(exc).splitlines()[0][:200])
        return []


async def _warm_prompts(cache: PromptCache, store: CrmStore, settings: Settings) -> None:
    """At start, beside the calls: one TTS process at a time so calls keep the other core."""
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
    """Everything `ivr serve` runs, started and stopped in order."""

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
    web_runner: web.AppRunner | None = None
    web_port: int | None = None
    # Several processes on one PostgreSQL (ivr/cluster): None = this process owns AMI alone.
    ami_ownership: AmiOwnership | None = None
    fanout: EventFanout | None = None
    # The background synthesis of everything a call may play (ivr.speech.warmup); done = steady state.
    prompts_warm: asyncio.Task[None] | None = None
    refused: RefusedCalls | None = None  # calls admission control sent to an operator: their records
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self, grace: float = 10.0) -> None:
        if self.prompts_warm is not None:
            self.prompts_warm.cancel()
            await asyncio.gather(self.prompts_warm, return_exceptions=True)
        await self.agi.stop(grace)
        await self.calls.drain(grace)  # the last calls' rows and timelines
        if self.refused is not None:
            await self.refused.drain(grace)
        if self.ami_ownership is not None:
            await self.ami_ownership.stop()  # stops AMI first if we own it, then frees the lock
        await self.ami.stop()
        await self.tracker.drain()
        await self.records.drain(grace)  # written, or spooled for the next start
        if self.fanout is not None:
            await self.fanout.stop()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        await self.board.close()
        await self.engine.dispose()
        self._stopped.set()

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
        }


async def start_service(settings: Settings, *, migrate: bool = True) -> Service:
    if migrate:
        await upgrade(settings.database.url)
    engine, store = build_store(settings)
    records = build_record_writer(settings, store)
    records.start()  # replays a spool a previous run left behind
    notifier = CallNotifier(records)
    board = OperatorBoard(store, settings.operators.names)
    notifier.subscribe(board.on_event)
    # Prometheus metrics (GET /metrics): call ends and queue waits from the notifier, AGI command
    # latency from the FastAGI server's hook, TTS cache and active calls read at scrape time.
    metrics = Metrics()
    notifier.subscribe(metrics.listener)
    prompt_cache = build_prompt_cache(settings)
    metrics.bind_prompt_cache(prompt_cache)
    metrics.bind_record_writer(records)
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
    handler = RepeatOrderCall(
        flow=flow,
        store=store,
        records=records,
        speaker=speaker,
        notifier=notifier,
        normalize=normalize_phone,
        config=CallConfig(
            db_deadline=settings.database.call_deadline,
            order_deadline=settings.database.order_deadline,
            hours=business_hours(settings),
            default_language=f.default_language,
            timezone=settings.delivery.timezone,
            window_start=settings.delivery.window_start,
            window_end=settings.delivery.window_end,
            media_slack=settings.agi.media_slack,
        ),
    )
    callback = CallbackRequestCall(
        store=store,
        speaker=speaker,
        notifier=notifier,
        hours=business_hours(settings),
        normalize=normalize_phone,
        db_deadline=settings.database.call_deadline,
        media_slack=settings.agi.media_slack,
        default_language=f.default_language,
    )
    a = settings.agi
    admission = Admission(
        AdmissionLimits(
            max_call_rate=a.max_call_rate, call_burst=a.call_burst, max_calls=a.max_connections,
            max_loop_lag=a.max_loop_lag, max_record_backlog=a.max_record_backlog,
        )
    )
    metrics.bind_admission(admission)
    admission.bind_record_backlog(lambda: records.backlog)
    refused = RefusedCalls(records, normalize_phone)
    agi = FastAgiServer(
        {"repeat-order": handler, "callback-request": callback},
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
    tracker = CallTracker(
        store,
        notifier,
        records=records,
        recordings=RecordingLocator(Path(settings.recordings.dir), settings.recordings.asterisk_dir or None),
        operator_names=settings.operators.names,
        hours=business_hours(settings),
    )
    # AMI is optional: without a username the client says so once and stays idle.
    ami = AmiClient(settings.ami, tracker.handle, on_resync=tracker.resync)
    ownership, fanout = None, None
    if settings.ami.enabled and is_postgres(settings.database.url):
        # Possibly one of several processes: AMI goes to the holder of the advisory lock, and board
        # events cross processes so a screen pop reaches the operator's WebSocket on any of them.
        dsn = asyncpg_dsn(settings.database.url)
        fanout = EventFanout(dsn, board.on_event)
        notifier.subscribe(fanout.publish)
        ownership = AmiOwnership(dsn, on_acquired=ami.start, on_lost=ami.stop)
    await agi.start()
    if fanout is not None and ownership is not None:
        await fanout.start()
        await ownership.start()
    else:
        await ami.start()
    service = Service(settings=settings, engine=engine, store=store, records=records, notifier=notifier, agi=agi,
                      board=board, tracker=tracker, ami=ami, calls=handler, ami_ownership=ownership, fanout=fanout,
                      refused=refused)
    if settings.web.enabled:
        console = ConsoleDeps(
            store=store,
            board=board,
            tracker=tracker,
            recordings_dir=Path(settings.recordings.dir),
            health=service.health,
            service_level_seconds=settings.web.service_level_seconds,
            cookie_secure=settings.web.cookie_secure,
            session_hours=settings.web.session_hours,
            timezone=settings.delivery.timezone,
            metrics=metrics,
        )
        web_app = build_web_app(store, api_token=settings.web.api_token, board=board, console=console)
        runner = web.AppRunner(web_app)
        await runner.setup()
        # reuse_port: every worker (`ivr serve --workers N`) listens on the same port; the kernel spreads.
        site = web.TCPSite(runner, settings.web.host, settings.web.port, reuse_port=True)
        await site.start()
        service.web_runner = runner
        sockets = site._server.sockets if site._server else ()  # the real port when 0 was asked for
        service.web_port = sockets[0].getsockname()[1] if sockets else settings.web.port
    log.info(
        "service_started",
        agi=f"{settings.agi.host}:{agi.port}",
        web=f"{settings.web.host}:{service.web_port}" if settings.web.enabled else None,
        database=_safe_url(settings.database.url),
        prompts=settings.prompts.dir,
        tts=settings.prompts.engine,
        ami=f"{settings.ami.host}:{settings.ami.port}" if settings.ami.enabled else "disabled",
        ami_lock=ownership is not None,
        pid=os.getpid(),
    )
    # In the background either way: the dialplan's named prompts first, then (warm_at_start) the rest.
    warm = _warm_prompts(prompt_cache, store, settings) if settings.prompts.warm_at_start else \
        _warm_dialplan_prompts(prompt_cache, settings)
    service.prompts_warm = asyncio.get_running_loop().create_task(warm, name="prompts-warm")
    return service


async def serve_forever(
    settings: Settings, *, migrate: bool = True, on_started: Callable[[], None] | None = None
) -> None:
    service = await start_service(settings, migrate=migrate)
    if on_started is not None:  # the supervisor of `ivr serve --workers N` waits for this
        on_started()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("service_stopping", active_calls=service.agi.active_calls)
    await service.stop()


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"
