"""What the console pages need from the service, passed once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.calls.screen_pop import OperatorBoard
from ivr.settings import SellerSettings, default_settings

DEPS_KEY = web.AppKey("console_deps", Any)


@dataclass
class ConsoleDeps:
    store: Any  # crm_bridge.services.CrmStore
    board: OperatorBoard | None = None
    tracker: Any = None  # ivr.calls.tracker.CallTracker: live_calls(), operator_state()
    recordings_dir: Path = Path("/var/spool/asterisk/monitor/ivr")
    health: Callable[[], dict[str, Any]] | None = None  # the service's component health
    service_level_seconds: int = 20
    cookie_secure: bool = True
    session_hours: float = 12.0
    timezone: str = "Europe/Moscow"
    metrics: Any = None  # ivr.web.console.metrics.Metrics
    database: Any = None  # ivr.database_gate.DatabaseGate: start-up state, unreachable since when
    seller: SellerSettings = field(default_factory=lambda: default_settings().seller)  # on every invoice
    outbox: Any = None  # crm_bridge.outbox.store.OutboxStore, when CRM targets are configured
    outbox_targets: tuple[str, ...] = ()  # the configured targets' names: each is reported, even with no row
    recording_links: Any = None  # crm_bridge.connectors.recording_links.RecordingLinks: GET /r/<token>
    recording_mp3: Any = None  # ivr.calls.recording_mp3.RecordingMp3: ?format=mp3 (None: not offered)
