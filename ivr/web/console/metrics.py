"""Prometheus metrics of the service, on a private registry (never prometheus_client's global one).

Exposed at ``GET /metrics`` (ivr.web.console.monitoring). What feeds each metric:

``ivr_calls_total{stage, outcome}`` (counter)
    One per end-of-call event seen by the notifier listener (``Metrics.listener``):
    ``stage="ivr"``: ``call.ended`` — the IVR runner finished its part of a call, outcome as the
    robot saw it; ``stage="call"``: ``call.hungup`` — the AMI tracker saw the whole call end, outcome
    from its facts and what the call row knew then. Outcomes are ``crm_bridge.contract.outcomes.Outcome``;
    ``calls.outcome`` (the statistics) merges both witnesses and is the call's verdict.
    Sum one stage, never both: with AMI on, a call through the robot appears once in each.
    An end without an outcome counts as ``unknown``.
``ivr_agi_command_seconds{command}`` (histogram)
    Round trip of every answered FastAGI command (write to reply) by verb (``STREAM FILE``,
    ``GET DATA``…), from the ``on_command`` hook of ``FastAgiServer`` / ``AgiChannel``. Media
    commands include the playback and the caller's typing.
``ivr_queue_wait_seconds{result}`` (histogram)
    The wait in the operators queue: ``operator.answered`` (hold_time, result="answered") and
    ``queue.abandoned`` (wait_seconds, result="abandoned") from the AMI tracker.
``ivr_tts_cache_hits_total`` / ``ivr_tts_cache_misses_total`` (counters)
    Read at scrape time from the bound ``PromptCache`` objects (``hits`` / ``misses``).
``ivr_active_agi_calls`` (gauge)
    Read at scrape time from the bound ``FastAgiServer.active_calls``.
``ivr_call_records_backlog`` (gauge), ``ivr_call_records_spooling`` (gauge, 0/1),
``ivr_call_records_written_total`` / ``_spooled_total`` / ``_dead_letters_total`` (counters)
    Read at scrape time from the bound ``RecordWriter`` (``backlog``, ``spooling``, ``stats``).
``ivr_calls_rejected_total{cause}`` (counter), ``ivr_event_loop_lag_seconds`` (gauge)
    Admission control (``ivr.agi.admission``): calls sent to an operator at once as ``overloaded``,
    by the limit that refused them; the smoothed event-loop lag it decides on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crm_bridge.contract.events import EventKind
from crm_bridge.dto import TimelineEventIn
from ivr.agi.admission import CAUSES

log = structlog.get_logger("ivr.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
AGI_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
QUEUE_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
END_EVENTS = frozenset({EventKind.CALL_ENDED, EventKind.CALL_HUNGUP})
_MAX_LABEL = 64


def _label(value: Any, default: str = "unknown") -> str:
    text = str(value).strip() if value is not None else ""
    return text[:_MAX_LABEL] or default


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


class _LiveCollector(Collector):
    """Values owned by other objects, read when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily("ivr_tts_cache_hits", "Synthesized prompts served from the cache"),
            CounterMetricFamily("ivr_tts_cache_misses", "Prompts that had to be synthesized"),
            GaugeMetricFamily("ivr_active_agi_calls", "FastAGI connections being served now"),
            GaugeMetricFamily("ivr_call_records_backlog", "Call records queued, not yet written or spooled"),
            GaugeMetricFamily("ivr_call_records_spooling", "1 while call records go to the local spool"),
            CounterMetricFamily("ivr_call_records_written", "Call records committed to the database"),
            CounterMetricFamily("ivr_call_records_spooled", "Call records written to the local spool"),
            CounterMetricFamily("ivr_call_records_dead_letters", "Call records the database rejected"),
            CounterMetricFamily("ivr_calls_rejected", "Calls refused as overloaded", labels=["cause"]),
            GaugeMetricFamily("ivr_event_loop_lag_seconds", "Smoothed event-loop lag seen by admission control"),
            *_outbox_families(),
        ]

    def collect(self) -> Iterator[Metric]:
        caches = self._metrics.prompt_caches
        yield CounterMetricFamily("ivr_tts_cache_hits", "Synthesized prompts served from the cache",
                                  value=sum(int(getattr(c, "hits", 0)) for c in caches))
        yield CounterMetricFamily("ivr_tts_cache_misses", "Prompts that had to be synthesized",
                                  value=sum(int(getattr(c, "misses", 0)) for c in caches))
        servers = self._metrics.agi_servers
        yield GaugeMetricFamily("ivr_active_agi_calls", "FastAGI connections being served now",
                                value=sum(int(getattr(s, "active_calls", 0)) for s in servers))
        writers = self._metrics.record_writers
        yield GaugeMetricFamily("ivr_call_records_backlog", "Call records queued, not yet written or spooled",
                                value=sum(w.backlog for w in writers))
        yield GaugeMetricFamily("ivr_call_records_spooling", "1 while call records go to the local spool",
                                value=int(any(w.spooling for w in writers)))
        for name, help_text in (("written", "Call records committed to the database"),
                                ("spooled", "Call records written to the local spool"),
                                ("dead_letters", "Call records the database rejected")):
            yield CounterMetricFamily(f"ivr_call_records_{name}", help_text,
                                      value=sum(getattr(w.stats, name) for w in writers))
        rejected = CounterMetricFamily("ivr_calls_rejected", "Calls refused as overloaded", labels=["cause"])
        lag = 0.0
        for admission in self._metrics.admissions:
            for cause in CAUSES:
                rejected.add_metric([cause], admission.rejected.get(cause, 0))
            lag = max(lag, admission.loop_lag)
        yield rejected
        yield GaugeMetricFamily("ivr_event_loop_lag_seconds", "Smoothed event-loop lag seen by admission control",
                                value=lag)
        backlog = self._metrics.outbox_backlog
        if backlog is not None:  # no CRM target, or the read failed: no sample rather than a stale one
            pending, dead, oldest = _outbox_families()
            for target, b in backlog.items():
                pending.add_metric([target], b.pending)
                dead.add_metric([target], b.dead)
                oldest.add_metric([target], b.oldest_pending_seconds or 0.0)
            yield from (pending, dead, oldest)


def _outbox_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("ivr_crm_outbox_pending", "CRM outbox events not yet delivered", labels=["target"]),
        GaugeMetricFamily("ivr_crm_outbox_dead", "CRM outbox dead letters (an admin may retry them)",
                          labels=["target"]),
        GaugeMetricFamily("ivr_crm_outbox_oldest_pending_seconds",
                          "Age of the oldest undelivered CRM event (0 when none)", labels=["target"]),
    )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter("ivr_calls", "Calls that ended, by stage (ivr: the robot's part; call: the whole "
                             "call, from AMI) and outcome", ["stage", "outcome"], registry=self.registry)
        self.agi_command = Histogram("ivr_agi_command_seconds", "FastAGI command round trip by verb",
                                     ["command"], buckets=AGI_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("ivr_queue_wait_seconds", "Wait in the operators queue",
                                    ["result"], buckets=QUEUE_BUCKETS, registry=self.registry)
        self.prompt_caches: list[Any] = []
        self.agi_servers: list[Any] = []
        self.record_writers: list[Any] = []
        self.admissions: list[Any] = []
        # {target: crm_bridge.dto.OutboxBacklog}, read by the /metrics handler before each render.
        self.outbox_backlog: dict[str, Any] | None = None
        self.registry.register(_LiveCollector(self))

    # --- feeds ------------------------------------------------------------------------------------

    def listener(self, event: TimelineEventIn) -> None:
        """CallNotifier listener: synchronous, cheap, never raises."""
        try:
            kind = event.kind
            data = event.data
            if kind in END_EVENTS:
                stage = "ivr" if kind == EventKind.CALL_ENDED else "call"
                self.calls.labels(stage=stage, outcome=_label(data.get("outcome"))).inc()
            elif kind == EventKind.OPERATOR_ANSWERED:
                wait = _seconds(data.get("hold_time"))
                if wait is not None:
                    self.queue_wait.labels(result="answered").observe(wait)
            elif kind == EventKind.QUEUE_ABANDONED:
                wait = _seconds(data.get("wait_seconds"))
                if wait is not None:
                    self.queue_wait.labels(result="abandoned").observe(wait)
        except Exception:
            log.exception("metrics_listener_failed", kind=getattr(event, "kind", None))

    def observe_agi(self, verb: str, seconds: float) -> None:
        """The FastAGI ``on_command`` hook."""
        self.agi_command.labels(command=_label(verb)).observe(max(0.0, seconds))

    def bind_prompt_cache(self, cache: Any) -> None:
        if all(c is not cache for c in self.prompt_caches):
            self.prompt_caches.append(cache)

    def bind_admission(self, admission: Any) -> None:
        if all(a is not admission for a in self.admissions):
            self.admissions.append(admission)

    def bind_agi_server(self, server: Any) -> None:
        if all(s is not server for s in self.agi_servers):
            self.agi_servers.append(server)

    def bind_record_writer(self, writer: Any) -> None:
        if all(w is not writer for w in self.record_writers):
            self.record_writers.append(writer)

    # --- output -----------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
