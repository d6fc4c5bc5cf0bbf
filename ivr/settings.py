"""One typed, frozen Settings object: defaults < config/ivr.toml < local file < IVR_* environment.

Settings are built once in the composition root and passed down; nothing reads them as a global.
Environment overrides use double underscores between section and key, e.g.
``IVR_AGI__PORT=4574`` or ``IVR_DATABASE__URL=postgresql+asyncpg://…``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any, get_type_hints

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "ivr.toml"


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class AgiSettings:
    host: str = "127.0.0.1"
    port: int = 4573
    # A peer that has not finished the env block by then is dropped.
    env_timeout: float = 5.0
    # Longest a non-blocking command (SET VARIABLE, ANSWER…) may take to answer.
    command_timeout: float = 10.0
    # Extra slack on top of a blocking command's own audio/timeout length.
    media_slack: float = 30.0
    # Where Asterisk finds our prompts: the same directory as prompts.dir unless Asterisk
    # runs in a container that mounts it elsewhere.
    asterisk_prompts_dir: str = ""
    # Admission control (ivr/agi/admission.py): above any of these a new call goes straight to an
    # operator with IVR_REASON=overloaded. 0 disables a limit.
    max_connections: int = 2000  # calls in the robot at once
    max_call_rate: float = 75.0  # new calls per second per process (measured ceiling: bench/README.md)
    call_burst: int = 75  # new calls accepted at once above the rate
    max_loop_lag: float = 0.25  # seconds the event loop is already late (smoothed)
    max_record_backlog: int = 20000  # call records waiting for the database


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///var/ivr.sqlite3"
    # Deadline of one CRM step (lookup, order) inside a call; past it the caller goes to a human.
    call_deadline: float = 3.0
    # An order write (the caller pressed 1 and waits for the confirmation) may take longer.
    order_deadline: float = 6.0
    pool_size: int = 10


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    api_token: str = "change-me"
    enabled: bool = True
    # Console sessions: cookies are Secure (browsers accept them on http://localhost too).
    cookie_secure: bool = True
    session_hours: float = 12.0
    # Service level: the share of queued callers an operator answered within this many seconds.
    service_level_seconds: int = 20


@dataclass(frozen=True)
class PromptSettings:
    dir: str = "var/prompts"
    engine: str = "espeak-ng"
    voice_ru: str = "ru"
    voice_en: str = "en-us"
    # Words per minute for espeak-ng; a phone line wants it a little slower than default.
    rate: int = 150
    tts_deadline: float = 10.0
    # Size limit of prompts.dir (static prompts, segment units, per-call files); least recently
    # used files are evicted beyond it. The ru+en library with the demo products is ~15 MB.
    cache_max_mb: int = 512
    # `ivr serve` synthesizes what is missing of the library in the background at start (one TTS
    # process at a time), so calls in steady state start none. Tests turn it off. The few prompts
    # the dialplan plays by name are built at start either way (Asterisk has no fallback for them).
    warm_at_start: bool = True
    # Write the words of assembled prompts beside their audio (<name>.txt) for `ivr call`; they
    # carry customers' names, so only the demo (`ivr serve --demo`) turns this on.
    text_sidecars: bool = False
    # Where per-call prompts (the read-back with its order number: written, played once, deleted)
    # go; "" = <dir>/calls. Point it at a tmpfs that Asterisk reads at the same path (e.g.
    # /dev/shm/ivr-calls on the Asterisk host): measured here, writing an 80 KB read-back costs
    # 0.5-0.9 ms of CPU on ext4 and 0.03 ms on tmpfs, the largest single cost of a call.
    calls_dir: str = ""


@dataclass(frozen=True)
class FlowSettings:
    # Seconds the caller has to press a menu key after the prompt.
    menu_timeout: float = 6.0
    # Seconds for a quantity (digits then #).
    quantity_timeout: float = 8.0
    # No-input / invalid-input attempts before the caller is handed to an operator.
    max_attempts: int = 2
    max_quantity: int = 50
    default_language: str = "ru"


@dataclass(frozen=True)
class OrderSettings:
    vat_rate: Decimal = Decimal("20")
    # Prices in the catalogue include VAT (Russian retail practice).
    prices_include_vat: bool = True
    currency: str = "RUB"
    invoice_prefix: str = "СЧ-"
    order_prefix: str = "A-"


@dataclass(frozen=True)
class DeliverySettings:
    timezone: str = "Europe/Moscow"
    # Orders placed before the cut-off are delivered on the next delivery day.
    cutoff: time = time(14, 0)
    # ISO weekdays (1 = Monday) on which we deliver.
    days: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    holidays: tuple[date, ...] = ()
    window_start: int = 9
    window_end: int = 14


@dataclass(frozen=True)
class AmiSettings:
    """Asterisk Manager Interface; optional: with no username the service runs without it."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    secret: str = ""
    ping_interval: float = 20.0
    action_timeout: float = 5.0
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.username)


@dataclass(frozen=True)
class RecordingSettings:
    # Where MixMonitor writes (the dialplan's IVR_RECORDINGS_DIR), as this service sees it.
    dir: str = "/var/spool/asterisk/monitor/ivr"
    # The same directory as Asterisk sees it, when the two differ (containers).
    asterisk_dir: str = ""


@dataclass(frozen=True)
class CallRecordSettings:
    # Call rows and timeline events wait here (append-only JSON lines) while the database is down.
    spool_dir: str = "var/spool"
    # Records queued in memory before submitters wait (backpressure, never a drop). Above
    # agi.max_record_backlog, where admission control already refuses new calls.
    max_backlog: int = 50_000
    # Records per transaction at most (group commit across calls).
    max_batch: int = 1_000
    # A batch taking longer than this counts as "database unreachable": it goes to the spool.
    write_timeout: float = 10.0
    # Replay of the spool: the first retry after this many seconds, doubling up to retry_max.
    retry_min: float = 0.5
    retry_max: float = 30.0


@dataclass(frozen=True)
class HoursSettings:
    """Operator business hours; outside them the robot still takes orders and promises a callback."""

    timezone: str = "Europe/Moscow"
    open: time = time(9, 0)
    close: time = time(20, 0)
    days: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    holidays: tuple[date, ...] = ()
    # How soon after the next opening a callback is due.
    callback_delay_minutes: int = 30


@dataclass(frozen=True)
class OperatorSettings:
    # Queue member interface -> the operator's name, e.g. {"PJSIP/101" = "Анна Смирнова"}.
    names: dict[str, str] = field(default_factory=dict)
    queue: str = "operators"


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True)
class Settings:
    agi: AgiSettings = field(default_factory=AgiSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    web: WebSettings = field(default_factory=WebSettings)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    flow: FlowSettings = field(default_factory=FlowSettings)
    orders: OrderSettings = field(default_factory=OrderSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    ami: AmiSettings = field(default_factory=AmiSettings)
    recordings: RecordingSettings = field(default_factory=RecordingSettings)
    call_records: CallRecordSettings = field(default_factory=CallRecordSettings)
    hours: HoursSettings = field(default_factory=HoursSettings)
    operators: OperatorSettings = field(default_factory=OperatorSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some keys of some sections changed: ``s.replace(agi={"port": 0})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **_coerce_section(type(getattr(self, name)), values))
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()  # a string from the environment (or 0/1 in TOML)
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(value)
            return lowered in {"1", "true", "yes", "on"}
        if annotation is int:
            # int(True) == 1 and int(4573.9) == 4573: a bool or a fractional number is a mistake.
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if annotation is Decimal:
            if isinstance(value, bool):
                raise ValueError(value)
            number = Decimal(str(value).strip())  # InvalidOperation (not a ValueError) is caught below
            if not number.is_finite():
                raise ValueError(value)
            return number
        if annotation is str:
            return str(value)
        if annotation is time:
            return value if isinstance(value, time) else time.fromisoformat(str(value))
        if annotation == tuple[int, ...]:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(v) for v in items if str(v).strip())
        if annotation == tuple[date, ...]:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(
                v if isinstance(v, date) else date.fromisoformat(str(v).strip()) for v in items if str(v).strip()
            )
        if annotation == dict[str, str]:
            if isinstance(value, str):  # environment: "PJSIP/101=Анна,PJSIP/102=Олег"
                pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
                return {k.strip(): v.strip() for k, v in pairs}
            if not isinstance(value, Mapping):
                raise TypeError(value)
            return {str(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise SettingsError(f"{key}: cannot read {value!r} as {getattr(annotation, '__name__', annotation)}") from exc
    raise SettingsError(f"{key}: unsupported setting type {annotation}")


def _coerce_section(section_type: type, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    hints = get_type_hints(section_type)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise SettingsError(f"{prefix}{key}: unknown setting")
        out[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return out


def _merge(settings: Settings, data: Mapping[str, Any], source: str) -> Settings:
    hints = get_type_hints(Settings)
    sections: dict[str, dict[str, Any]] = {}
    for name, values in data.items():
        if name not in hints:
            raise SettingsError(f"{source}: unknown section [{name}]")
        if not isinstance(values, Mapping):
            raise SettingsError(f"{source}: [{name}] must be a table")
        _coerce_section(hints[name], values, f"{source}: {name}.")  # validate with a clear prefix
        sections[name] = dict(values)
    return settings.replace(**sections)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith("IVR_") or "__" not in key:
            continue
        section, _, name = key[4:].lower().partition("__")
        out.setdefault(section, {})[name] = value
    return out


def load_settings(
    config_file: Path | None = None,
    local_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the layered sources; raises SettingsError naming the bad key."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    if config_file is None and environ.get("IVR_CONFIG"):
        config_file = Path(environ["IVR_CONFIG"])
    # A file named explicitly (argument, IVR_CONFIG, IVR_LOCAL_CONFIG) must exist: a typo in its path
    # must not silently start the service on the defaults (api_token "change-me", SQLite…).
    files = [(config_file, True)] if config_file is not None else [(DEFAULT_CONFIG, False)]
    if local_file is None and environ.get("IVR_LOCAL_CONFIG"):
        local_file = Path(environ["IVR_LOCAL_CONFIG"])
    if local_file is not None:
        files.append((local_file, True))
    for path, required in files:
        if required and not path.is_file():
            raise SettingsError(f"{path}: no such configuration file")
        if path.exists():
            with path.open("rb") as fh:
                try:
                    data = tomllib.load(fh)
                except tomllib.TOMLDecodeError as exc:
                    raise SettingsError(f"{path}: {exc}") from exc
            settings = _merge(settings, data, str(path))
    return _merge(settings, _env_overrides(environ), "environment")
