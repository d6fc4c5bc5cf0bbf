"""One typed, frozen Settings object: defaults < config file < local file < IVR_* environment.

The defaults live in one place, ``ivr/defaults.toml``, package data read through importlib.resources:
they ship inside the wheel, so ``pip install .`` (the Dockerfile) gets the same values, holidays
included, as a checkout; the dataclasses below declare types only, and a key missing from the file
fails at start-up instead of falling back to a second, silently different default. An admin's file
(``--config`` / ``IVR_CONFIG``, then ``IVR_LOCAL_CONFIG``; ``config/ivr.example.toml`` shows one)
overrides only the keys it names.

Settings are built once in the composition root and passed down; nothing reads them as a global.
Environment overrides use double underscores between section and key, e.g.
``IVR_AGI__PORT=4574`` or ``IVR_DATABASE__URL=postgresql+asyncpg://…``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from crm_bridge.deals import Pipeline
from ivr.speech.cpus import check_spec

DEFAULTS_RESOURCE = "defaults.toml"  # in the ivr package: see the module docstring


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


# (first day, percent) pairs, oldest first: orders.vat_rates.
VatRates = tuple[tuple[date, Decimal], ...]


@dataclass(frozen=True)
class AgiSettings:
    host: str
    port: int
    # A peer that has not finished the env block by then is dropped.
    env_timeout: float
    # Longest a non-blocking command (SET VARIABLE, ANSWER…) may take to answer.
    command_timeout: float
    # Extra slack on top of a blocking command's own audio/timeout length.
    media_slack: float
    # Where Asterisk finds our prompts: the same directory as prompts.dir unless Asterisk
    # runs in a container that mounts it elsewhere.
    asterisk_prompts_dir: str
    # Admission control (ivr/agi/admission.py): above any of these a new call goes straight to an
    # operator with IVR_REASON=overloaded. 0 disables a limit.
    max_connections: int  # calls in the robot at once
    max_call_rate: float  # new calls per second per process (measured ceiling: bench/README.md)
    call_burst: int  # new calls accepted at once above the rate
    max_loop_lag: float  # seconds the event loop is already late (smoothed)
    max_record_backlog: int  # call records waiting for the database
    # At SIGTERM: seconds the calls in progress may take to finish before they are handed to an
    # operator (IVR_REASON=shutdown). Keep it below the orchestrator's kill timeout (docs: README).
    drain_seconds: float
    # The process's event loop (ivr/event_loop.py): uvloop measured a fifth less CPU per call.
    event_loop: Literal["uvloop", "asyncio"]


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    # Deadline of one CRM step (lookup, order) inside a call; past it the caller goes to a human.
    call_deadline: float
    # An order write (the caller pressed 1 and waits for the confirmation) may take longer.
    order_deadline: float
    pool_size: int
    # Database down at start: retried in the background, doubling from retry_min up to retry_max.
    retry_min: float
    retry_max: float


@dataclass(frozen=True)
class WebSettings:
    host: str
    port: int
    api_token: str
    enabled: bool
    # Console sessions: cookies are Secure (browsers accept them on http://localhost too).
    cookie_secure: bool
    session_hours: float
    # Service level: the share of queued callers an operator answered within this many seconds.
    service_level_seconds: int
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client
    # (ivr.web.client_address); empty: the TCP peer is the client.
    trusted_proxies: tuple[str, ...]


@dataclass(frozen=True)
class PromptSettings:
    dir: str
    engine: str
    voice_ru: str
    voice_en: str
    # Words per minute for espeak-ng; a phone line wants it a little slower than default.
    rate: int
    tts_deadline: float
    # Size limit of prompts.dir (static prompts, segment units, per-call files); least recently
    # used files are evicted beyond it. The ru+en library with the demo products is ~15 MB.
    cache_max_mb: int
    # Days after its last use at which an assembled greeting (composed/: it says the customer's
    # name and last order) is deleted, however much room the size limit leaves; 0 = no age limit.
    composed_max_age_days: float
    # `ivr serve` synthesizes what is missing of the library in the background at start (one TTS
    # process at a time), so calls in steady state start none. Tests turn it off. The few prompts
    # the dialplan plays by name are built at start either way (Asterisk has no fallback for them).
    warm_at_start: bool
    # Write the words of assembled prompts beside their audio (<name>.txt) for `ivr call`; they
    # carry customers' names, so only the demo (`ivr serve --demo`) turns this on.
    text_sidecars: bool
    # Where per-call prompts (the read-back with its order number: written, played once, deleted)
    # go; "" = <dir>/calls. Point it at a tmpfs that Asterisk reads at the same path (e.g.
    # /dev/shm/ivr-calls on the Asterisk host): writing an 80 KB file measured 0.03 ms of CPU on
    # tmpfs against 0.5-0.9 ms on this machine's ext4.
    calls_dir: str


@dataclass(frozen=True)
class FlowSettings:
    # Seconds the caller has to press a menu key after the prompt.
    menu_timeout: float
    # Seconds for a quantity (digits then #).
    quantity_timeout: float
    # No-input / invalid-input attempts before the caller is handed to an operator.
    max_attempts: int
    max_quantity: int
    default_language: str
    # Seconds the caller may hear nothing while the robot works (lookup, order, synthesis) before an
    # operator takes over (ivr/calls/silence.py); the database deadlines never stretch it.
    max_silence: float


@dataclass(frozen=True)
class OrderSettings:
    # VAT percent by the first day it applies, chosen by the order's delivery (shipment) date.
    # TOML: [{from = "2019-01-01", rate = "20"}, …]; environment: "2019-01-01=20,2026-01-01=22".
    vat_rates: VatRates
    # Prices in the catalogue include VAT (Russian retail practice).
    prices_include_vat: bool
    invoice_prefix: str
    order_prefix: str
    # Bounds of an order placed through the API (operators, CRM clients); per line: flow.max_quantity.
    max_lines: int
    max_total_quantity: int
    # An operator's order (console or API) with the same lines as an order of the same customer in
    # the last hours asks "repeat order?" first (API: 409 possible_duplicate); 0 turns it off.
    duplicate_window_hours: float


@dataclass(frozen=True)
class SellerSettings:
    """The seller's requisites printed on every invoice (счёт на оплату): fill them in before going live."""

    name: str  # full legal name, e.g. ООО «Чистая вода»
    inn: str
    kpp: str  # empty for a sole proprietor (ИП)
    address: str
    bank: str
    bik: str
    account: str  # расчётный счёт
    correspondent_account: str  # корреспондентский счёт of the bank
    director: str  # signs as Руководитель
    accountant: str  # signs as Бухгалтер


@dataclass(frozen=True)
class DeliverySettings:
    timezone: str
    # Orders placed before the cut-off are delivered on the next delivery day.
    cutoff: time
    # ISO weekdays (1 = Monday) on which we deliver.
    days: tuple[int, ...]
    holidays: tuple[date, ...]
    window_start: int
    window_end: int


@dataclass(frozen=True)
class AmiSettings:
    """Asterisk Manager Interface; optional: with no username the service runs without it."""

    host: str
    port: int
    username: str
    secret: str
    ping_interval: float
    action_timeout: float
    reconnect_min: float
    reconnect_max: float
    # Events received and not yet handled by the call tracker, at most. Beyond it the event stream
    # is dropped and, once the tracker has caught up, resynced (ivr.ami.client): memory stays
    # bounded (~2.5 KB an event, measured over the AMI traces: 25 MB at the default) and no event
    # is lost without the tracker getting a fresh snapshot.
    max_queued_events: int

    @property
    def enabled(self) -> bool:
        return bool(self.username)


@dataclass(frozen=True)
class RecordingSettings:
    # Where MixMonitor writes (the dialplan's IVR_RECORDINGS_DIR), as this service sees it.
    dir: str
    # The same directory as Asterisk sees it, when the two differ (containers).
    asterisk_dir: str
    # MP3 copies served to browsers and CRMs that ask for them (?format=mp3), made once with ffmpeg;
    # the oldest are removed above mp3_cache_mb.
    mp3_cache_dir: str
    mp3_cache_mb: int


@dataclass(frozen=True)
class CallRecordSettings:
    # Call rows and timeline events wait here (append-only JSON lines) while the database is down.
    spool_dir: str
    # Records queued in memory before submitters wait (backpressure, never a drop). Above
    # agi.max_record_backlog, where admission control already refuses new calls.
    max_backlog: int
    # Records per transaction at most (group commit across calls).
    max_batch: int
    # Seconds the writer waits after the first record of a batch so other calls' records join the
    # same transaction (fewer, larger commits; a record reaches the database this much later).
    linger: float
    # A batch taking longer than this counts as "database unreachable": it goes to the spool.
    write_timeout: float
    # Replay of the spool: the first retry after this many seconds, doubling up to retry_max.
    retry_min: float
    retry_max: float


@dataclass(frozen=True)
class HoursSettings:
    """Operator business hours; outside them the robot still takes orders and promises a callback."""

    timezone: str
    open: time
    close: time
    days: tuple[int, ...]
    holidays: tuple[date, ...]
    # How soon after the next opening a callback is due.
    callback_delay_minutes: int


@dataclass(frozen=True)
class OperatorSettings:
    # Queue member interface -> the operator's name, e.g. {"PJSIP/101" = "Анна Смирнова"}.
    names: dict[str, str]


@dataclass(frozen=True)
class CrmSettings:
    """The CRM bridge (crm_bridge/outbox, crm_bridge/connectors): call events pushed to other systems."""

    # Which targets receive call events: "webhook", "bitrix24" (their own sections below). Empty: none,
    # and a call writes nothing more than without the bridge.
    targets: tuple[str, ...]
    # This process delivers (one per cluster, by a PostgreSQL lock). false: it only enqueues, and a
    # dedicated `ivr crm deliver` process delivers: the calls' processes spend no CPU on it.
    deliver: bool
    # A delivery failing this many times becomes a dead letter (console: /admin/crm, "retry").
    max_attempts: int
    # Backoff between attempts: retry_min doubling up to retry_max seconds, jittered down to half.
    retry_min: float
    retry_max: float
    batch: int  # rows a worker takes per round
    lease: float  # seconds a taken row is another worker's to leave alone (then taken again)
    poll_interval: float  # seconds between looks at an empty outbox
    request_timeout: float  # seconds one HTTP request to a target may take
    # Recording links a CRM fetches (GET /r/<token>): our web server as the CRM reaches it, the HMAC
    # key of the links (16+ characters) and how long a link stays valid. Empty: no recordings sent.
    public_url: str
    link_secret: str
    link_hours: float


@dataclass(frozen=True)
class CrmWebhookSettings:
    url: str
    secret: str  # HMAC-SHA256 key of X-Ivr-Signature (16+ characters)
    events: tuple[str, ...]  # event kinds to send; empty: every exported kind
    rate: float  # requests per second at most
    burst: int


@dataclass(frozen=True)
class CrmBitrix24Settings:
    webhook_url: str  # https://<portal>/rest/<user>/<token>/ (an incoming webhook: telephony + crm)
    default_user: int  # the Bitrix24 user a call is registered to (and finished by, without an operator)
    users: dict[str, str]  # queue member interface -> Bitrix24 user id, e.g. {"PJSIP/101" = "7"}
    crm_create: bool  # CRM_CREATE: a lead for an unknown number
    line_number: str  # LINE_NUMBER of the register, empty: none
    rate: float  # Bitrix24 allows about 2 requests per second per webhook
    burst: int
    # Orders as deals (crm.deal.add + product rows; changes and cancellations follow).
    deals: bool
    deal_stage: str  # STAGE_ID of a new deal ("NEW"; in another pipeline "C<id>:NEW")
    deal_lost_stage: str  # STAGE_ID of a cancelled order's deal ("LOSE")
    deal_category: int  # CATEGORY_ID, the pipeline; 0 = the main one


@dataclass(frozen=True)
class CrmAmocrmSettings:
    base_url: str  # https://<subdomain>.amocrm.ru (or .kommo.com)
    token: str  # the private integration's long-lived token (a secret: scrubbed from every text)
    source: str  # "source" of a call in amoCRM's call log
    default_user: int  # amoCRM user id of a call without an operator (created_by / responsible); 0: none
    users: dict[str, str]  # queue member interface -> amoCRM user id
    leads: bool  # orders as leads (deals) with a note of their lines
    pipeline_id: int  # 0: the account's main pipeline
    status_id: int  # stage of a new lead; 0: the pipeline's first
    lost_status_id: int  # stage of a cancelled order's lead (143 "Закрыто и не реализовано")
    rate: float  # amoCRM allows 7 requests per second per integration
    burst: int


@dataclass(frozen=True)
class SyncSettings:
    """The pull from a CRM (crm_bridge/sync): contacts, products and deals into our store."""

    # none: no pull; bitrix24: through [crm_bitrix24] webhook_url (scope crm); amocrm: [crm_amocrm].
    source: Literal["none", "bitrix24", "amocrm"]
    interval_minutes: float  # between the end of one run and the start of the next, in `ivr serve`
    request_timeout: float  # seconds one request to the CRM may take
    retries: int  # a throttled or failed request is asked again this many times (backoff 1 s doubling to 30 s)
    region: str  # the country a phone number without its code is taken to be in (RU: 8 916… = +7 916…)


@dataclass(frozen=True)
class DealSettings:
    """Deals (сделки): the pipeline of stages a deal moves through (crm_bridge.deals.Pipeline)."""

    # Stage code -> display name, in pipeline order; the first is where every deal starts. Codes:
    # a-z, 0-9, _ (they are stored, in URLs and the API); names are what the console shows.
    stages: dict[str, str]
    closed: tuple[str, ...]  # stages that end a deal (then no longer "the caller's open deal")
    cancelled: str  # the (closed) stage an order's cancel moves its deal to
    # A call from a number nobody owns opens a lead-like deal (no customer, the number kept).
    create_for_unknown: bool

    def __post_init__(self) -> None:
        try:
            self.pipeline()
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    def pipeline(self) -> Pipeline:
        return Pipeline(stages=tuple(self.stages.items()), closed=frozenset(self.closed), cancelled=self.cancelled,
                        create_for_unknown=self.create_for_unknown)


@dataclass(frozen=True)
class SpeechSettings:
    """Voice answers (issue 12): vosk models and the AudioSocket listener."""

    # The default of every line (a line's IVR_SPEECH=1/0 overrides it). The models load and the
    # AudioSocket listener starts when this is on or a model is configured.
    enabled: bool
    # vosk model directories (the one holding am/, conf/, graph/); "" = no model for that language:
    # its callers stay on keys. A missing or unreadable model is one log line, not a failed start.
    model_ru: str
    model_en: str
    # A recognized word below this confidence makes the whole answer a failed input (re-asked).
    min_confidence: float
    # Where Asterisk's AudioSocket() connects; loopback unless Asterisk runs on another host.
    audiosocket_host: str
    audiosocket_port: int
    # "host:port" Asterisk is told to connect to; "" = audiosocket_host:port (a wildcard host: 127.0.0.1).
    audiosocket_address: str
    # The AudioSocket listener and the recognizers in a process of their own (ivr/audiosocket/worker.py),
    # started and restarted by the service; false: in the calls' process (a call's AGI then slows
    # while others speak: README "Speech").
    own_process: bool
    # Threads that run vosk (it releases the GIL while decoding); one per core is plenty.
    recognizer_threads: int
    # Transcripts of recordings (ivr/speech/transcriber.py): on/off, the model (a big one; "" = the
    # call's language's model_ru / model_en) and its language, files transcribed at once (each one
    # thread, at a lower CPU priority than the calls), the longest recording accepted (seconds).
    transcripts: bool
    model_transcripts: str
    transcripts_language: str
    transcribe_workers: int
    transcribe_max_seconds: float
    # How far below the event loop the decoding threads run (Linux nice, 0..19): the calls' AGI first.
    recognizer_nice: int
    # The CPUs the answers' decoding threads run on: "auto" = all but the first, so
    # the calls keep a core with warm caches (measured: ivr/speech/cpus.py), "all", or a list "1-3".
    recognizer_cpus: str
    # Seconds of quiet after the caller spoke before the answer is decided (our own end of speech,
    # plus the model's endpoint rules 2/3 set to it and twice it); 0 = the model's own
    # conf/model.conf alone (0.5 s, ~0.8 s after the word here). See README "Speech".
    endpoint_silence: float
    # Frame RMS (of 32768) under which the caller counts as quiet, for endpoint_silence.
    silence_level: int

    def __post_init__(self) -> None:
        try:
            check_spec(self.recognizer_cpus)
        except ValueError as exc:
            raise SettingsError(f"speech.recognizer_cpus: {exc}") from None


@dataclass(frozen=True)
class LogSettings:
    level: str
    json: bool


@dataclass(frozen=True)
class Settings:
    agi: AgiSettings
    database: DatabaseSettings
    web: WebSettings
    prompts: PromptSettings
    flow: FlowSettings
    orders: OrderSettings
    seller: SellerSettings
    delivery: DeliverySettings
    ami: AmiSettings
    recordings: RecordingSettings
    call_records: CallRecordSettings
    hours: HoursSettings
    operators: OperatorSettings
    crm: CrmSettings
    crm_webhook: CrmWebhookSettings
    crm_bitrix24: CrmBitrix24Settings
    crm_amocrm: CrmAmocrmSettings
    sync: SyncSettings
    deals: DealSettings
    speech: SpeechSettings
    log: LogSettings

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some keys of some sections changed: ``s.replace(agi={"port": 0})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **_coerce_section(type(getattr(self, name)), values))
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    if get_origin(annotation) is Literal:  # one of a few words
        choices = get_args(annotation)
        if str(value) not in choices:
            raise SettingsError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return str(value)
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
        if annotation == tuple[str, ...]:
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, Mapping) or not isinstance(items, list | tuple):
                raise TypeError(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if annotation == tuple[int, ...]:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(v) for v in items if str(v).strip())
        if annotation == tuple[date, ...]:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(
                v if isinstance(v, date) else date.fromisoformat(str(v).strip()) for v in items if str(v).strip()
            )
        if annotation == VatRates:
            return _vat_rates(value)
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


def _vat_rates(value: Any) -> VatRates:
    """A list of {from, rate} tables (TOML) or "2019-01-01=20,2026-01-01=22" (environment)."""
    if isinstance(value, str):
        value = [dict(zip(("from", "rate"), item.split("=", 1), strict=True)) for item in value.split(",")
                 if item.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(value)
    rates: list[tuple[date, Decimal]] = []
    for entry in value:
        if not isinstance(entry, Mapping) or set(entry) != {"from", "rate"}:
            raise ValueError(entry)
        start = entry["from"]
        start = start if isinstance(start, date) else date.fromisoformat(str(start).strip())
        rate = Decimal(str(entry["rate"]).strip())
        if isinstance(entry["rate"], bool) or not rate.is_finite() or not 0 <= rate < 100:
            raise ValueError(entry)
        rates.append((start, rate))
    if len({start for start, _ in rates}) != len(rates):
        raise ValueError("two rates start on the same day")
    return tuple(sorted(rates))


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
    settings = default_settings()
    if config_file is None and environ.get("IVR_CONFIG"):
        config_file = Path(environ["IVR_CONFIG"])
    if local_file is None and environ.get("IVR_LOCAL_CONFIG"):
        local_file = Path(environ["IVR_LOCAL_CONFIG"])
    # A file named (argument, IVR_CONFIG, IVR_LOCAL_CONFIG) must exist: a typo in its path must not
    # silently start the service on the defaults (api_token "change-me", SQLite…).
    for path in (config_file, local_file):
        if path is None:
            continue
        if not path.is_file():
            raise SettingsError(f"{path}: no such configuration file")
        settings = _merge(settings, _read_toml(path.read_bytes(), str(path)), str(path))
    return _merge(settings, _env_overrides(environ), "environment")


@cache
def default_settings() -> Settings:
    """The shipped defaults (``ivr/defaults.toml``): every key of every section, nothing else."""
    source = f"ivr/{DEFAULTS_RESOURCE}"
    data = _read_toml(resources.files("ivr").joinpath(DEFAULTS_RESOURCE).read_bytes(), source)
    hints = get_type_hints(Settings)
    sections: dict[str, Any] = {}
    for name, section_type in hints.items():
        values = data.get(name)
        if not isinstance(values, Mapping):
            raise SettingsError(f"{source}: section [{name}] is missing")
        missing = sorted(set(get_type_hints(section_type)) - set(values))
        if missing:
            raise SettingsError(f"{source}: {name}.{missing[0]} has no default")
        sections[name] = section_type(**_coerce_section(section_type, values, f"{source}: {name}."))
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise SettingsError(f"{source}: unknown section [{unknown[0]}]")
    return Settings(**sections)


def _read_toml(raw: bytes, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{source}: {exc}") from exc
