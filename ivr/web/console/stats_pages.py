"""Supervisor statistics: the /stats page (tiles, tables, inline SVG charts), its JSON and CSV twins.

- ``GET /stats?from=YYYY-MM-DD&to=YYYY-MM-DD`` — the page (supervisor, admin); today by default.
- ``GET /api/v1/stats?from=&to=`` — the same numbers as JSON (stable keys, money as strings).
- ``GET /api/v1/stats.csv?from=&to=`` — CSV for Excel: UTF-8 with BOM, ``;``, decimal comma, Russian
  headers (``Показатель;Значение;Ключ``: the last column is the JSON's dotted key, stable for scripts).

``from`` / ``to`` are dates, both inclusive, in the console's time zone; full ISO datetimes work too
(``from`` inclusive, ``to`` exclusive; a datetime without an offset is in the console's time zone).
What each number means is written in ``crm_bridge.stats``. Charts are SVG drawn here, server-side:
no JavaScript library, nothing fetched from the network.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from markupsafe import Markup, escape

from crm_bridge.stats import AUTOMATION_DEFINITION, CallStatistics, DayRow, call_statistics
from ivr.web.common import api_error, to_json
from ivr.web.console import formats
from ivr.web.console.auth import require
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import OUTCOME_LABELS, STATS_CSV_HEADERS, stats_metric_label
from ivr.web.console.render import render

# A period longer than this is refused: the page and the p90 read one row per call of the period.
MAX_DAYS = 366
# The by-day table of the CSV, in this order (headers: labels.STATS_CSV_HEADERS["day_" + column]).
DAY_COLUMNS = ("day", "calls", "robot_answered", "robot_finished", "automation_rate", "operator_answered",
               "operator_share", "queued", "answered_within_service_level", "service_level")


class BadPeriod(ValueError):
    """``str()`` is the API's English message; ``words`` is what the page says."""

    def __init__(self, message: str, words: str) -> None:
        super().__init__(message)
        self.words = words


@dataclass(frozen=True)
class Period:
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive
    label_from: str  # as the user meant it: a date, or a local datetime
    label_to: str
    first_day: date  # local dates, for the form
    last_day: date


def _parse_bound(value: str, zone: ZoneInfo, name: str) -> date | datetime:
    value = value.strip()
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadPeriod(f"{name} must be YYYY-MM-DD or an ISO 8601 datetime, got {value[:40]!r}",
                        f"дата «{value[:40]}» не распознана: нужна ГГГГ-ММ-ДД") from exc
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _local_label(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H-%M")


def parse_period(query: Any, timezone: str, today: date) -> Period:
    """The period of ``?from=&to=``; a missing bound takes the other one's day (both missing: today)."""
    zone = ZoneInfo(timezone)
    raw_from, raw_to = (query.get("from") or "").strip(), (query.get("to") or "").strip()
    low = _parse_bound(raw_from, zone, "from") if raw_from else None
    high = _parse_bound(raw_to, zone, "to") if raw_to else None
    if low is None and high is None:
        low = high = today
    elif low is None:
        low = high if not isinstance(high, datetime) else high.astimezone(zone).date()
    elif high is None:
        high = low if not isinstance(low, datetime) else low.astimezone(zone).date()
    assert low is not None and high is not None

    if isinstance(low, datetime):
        start, label_from, first_day = low, _local_label(low, zone), low.astimezone(zone).date()
    else:
        start, label_from, first_day = datetime.combine(low, time(), tzinfo=zone), low.isoformat(), low
    if isinstance(high, datetime):
        end, label_to = high, _local_label(high, zone)
        last_day = (high - timedelta(microseconds=1)).astimezone(zone).date()
    else:
        end = datetime.combine(high + timedelta(days=1), time(), tzinfo=zone)
        label_to, last_day = high.isoformat(), high

    both_dates = not isinstance(low, datetime) and not isinstance(high, datetime)
    if (both_dates and low > high) or start > end:
        raise BadPeriod(f"from ({label_from}) is after to ({label_to})", "начало периода позже его конца")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadPeriod(f"the period is longer than {MAX_DAYS} days", f"период длиннее {MAX_DAYS} дней")
    return Period(start, end, label_from, label_to, first_day, max(first_day, last_day))


def _today(deps: ConsoleDeps) -> date:
    return datetime.now(ZoneInfo(deps.timezone)).date()


async def _statistics(deps: ConsoleDeps, period: Period) -> CallStatistics:
    return await call_statistics(
        deps.store.sessions,
        period.start,
        period.end,
        service_level_seconds=deps.service_level_seconds,
        timezone=deps.timezone,
    )


# --- JSON and CSV ----------------------------------------------------------------------------------


def _wait(w: Any) -> dict[str, Any]:
    return {"count": w.count, "average": w.average, "p90": w.p90}


def statistics_json(stats: CallStatistics, period: Period, *, money_as_string: bool = True) -> dict[str, Any]:
    """The stable JSON shape of the statistics (money is a string, ratios are fractions 0..1).

    ``money_as_string=False`` keeps the Decimal (the CSV writes it with a decimal comma)."""
    zone = ZoneInfo(stats.timezone)
    return {
        "period": {
            "from": period.label_from,
            "to": period.label_to,
            "start": stats.start.astimezone(zone).isoformat(),  # inclusive, local time with its offset
            "end": stats.end.astimezone(zone).isoformat(),  # exclusive
            "timezone": stats.timezone,
        },
        "service_level_seconds": stats.service_level_seconds,
        "calls": {
            "total": stats.calls_total,
            "known_customer": stats.known_customer_calls,
            "by_outcome": dict(stats.calls_by_outcome),
        },
        "queue": {
            "entered": stats.queued_calls,
            "answered": stats.answered_calls,
            "abandoned": stats.abandoned_in_queue,
            "abandon_rate": stats.abandon_rate,
            "answered_within_service_level": stats.answered_within_service_level,
            "service_level": stats.service_level,
            "wait_seconds": {
                "answered": _wait(stats.wait_answered),
                "abandoned": _wait(stats.wait_abandoned),
                "all": _wait(stats.wait_all),
            },
            "avg_talk_seconds": stats.avg_talk_seconds,
        },
        "orders": {
            "ivr": stats.ivr_orders,
            "ivr_amount": str(stats.ivr_orders_amount) if money_as_string else stats.ivr_orders_amount,
            "operator_from_calls": stats.operator_orders_from_calls,
            "from_calls": stats.orders_from_calls,
            "ivr_share": stats.ivr_order_share,
            "ivr_per_known_customer_call": stats.ivr_orders_per_known_customer_call,
        },
        "automation": {
            "rate": stats.automation_rate,
            "robot_finished": stats.robot_finished,
            "robot_answered": stats.robot_answered,
            "robot_refused": stats.robot_refused,
            "finished_by_outcome": dict(stats.robot_finished_by_outcome),
            "definition": AUTOMATION_DEFINITION,
        },
        "operators": [
            {
                "interface": row.interface,
                "name": row.name,
                "calls_answered": row.calls_answered,
                "avg_talk_seconds": row.avg_talk_seconds,
                "avg_wait_seconds": row.avg_wait_seconds,
                "orders": row.orders,
            }
            for row in stats.operators
        ],
        "funnel": [
            {"stage": s.stage, "label": s.label, "count": s.count, "share_of_previous": s.share_of_previous}
            for s in stats.funnel
        ],
        "calls_per_hour": list(stats.calls_per_hour),
        "days": [
            {
                "day": d.day.isoformat(),
                "calls": d.calls,
                "robot_answered": d.robot_answered,
                "robot_finished": d.robot_finished,
                "automation_rate": d.automation_rate,
                "operator_answered": d.operator_answered,
                "operator_share": d.operator_share,
                "queued": d.queued,
                "answered_within_service_level": d.answered_within_service_level,
                "service_level": d.service_level,
            }
            for d in stats.days
        ],
    }


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, item, out)
    else:
        out.append((prefix, value))


def _cell(value: Any) -> str:
    """Excel (Russian locale, the one that wants ``;``) reads a decimal comma as a number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float | Decimal):
        return formats.decimal_comma(value)
    return str(value)


def statistics_csv(data: dict[str, Any]) -> str:
    """Показатель;Значение;Ключ: the JSON flattened, each row with its Russian name first and its
    stable machine key (the JSON's dotted path) last; then the operators, then the hours, each table
    under Russian column headers (labels.STATS_CSV_HEADERS; the column order is fixed)."""
    metrics: list[tuple[str, Any]] = []
    flat = {k: v for k, v in data.items() if k not in ("operators", "funnel", "calls_per_hour", "days")}
    flat["funnel"] = {s["stage"]: {"count": s["count"], "share_of_previous": s["share_of_previous"]}
                      for s in data["funnel"]}
    _flatten("", flat, metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([STATS_CSV_HEADERS[c] for c in ("metric", "value", "key")])
    writer.writerows([stats_metric_label(key), _cell(value), key] for key, value in metrics)
    writer.writerow([])
    columns = ["interface", "name", "calls_answered", "avg_talk_seconds", "avg_wait_seconds", "orders"]
    writer.writerow([STATS_CSV_HEADERS["operator_" + c if c in ("interface", "name") else c] for c in columns])
    writer.writerows([_cell(row[c]) for c in columns] for row in data["operators"])
    writer.writerow([])
    writer.writerow([STATS_CSV_HEADERS["hour"], STATS_CSV_HEADERS["calls"]])
    writer.writerows([f"{hour:02d}", count] for hour, count in enumerate(data["calls_per_hour"]))
    writer.writerow([])
    writer.writerow([STATS_CSV_HEADERS["day_" + c] for c in DAY_COLUMNS])
    writer.writerows([_cell(row[c]) for c in DAY_COLUMNS] for row in data["days"])
    return "\ufeff" + buffer.getvalue()


async def _api_period(request: web.Request) -> tuple[ConsoleDeps, Period] | web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    try:
        return deps, parse_period(request.query, deps.timezone, _today(deps))
    except BadPeriod as exc:
        return api_error(400, "bad_query", str(exc))


@require("supervisor", "admin")
async def stats_json(request: web.Request) -> web.Response:
    parsed = await _api_period(request)
    if isinstance(parsed, web.Response):
        return parsed
    deps, period = parsed
    return to_json(statistics_json(await _statistics(deps, period), period))


@require("supervisor", "admin")
async def stats_csv(request: web.Request) -> web.Response:
    parsed = await _api_period(request)
    if isinstance(parsed, web.Response):
        return parsed
    deps, period = parsed
    body = statistics_csv(statistics_json(await _statistics(deps, period), period, money_as_string=False))
    name = f"ivr-stats_{period.label_from}_{period.label_to}.csv"
    return web.Response(
        body=body.encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


# --- the page --------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}".replace(".", ",") + " %"


def secs(value: float | None) -> str:
    """Seconds as m:ss ("—" when unknown)."""
    if value is None:
        return "—"
    total = int(round(value))
    return f"{total // 60}:{total % 60:02d}"


def hour_chart(counts: tuple[int, ...] | list[int]) -> Markup:
    """Vertical bars, one per local hour 0–23."""
    bar_w, gap, top, plot_h, left = 38, 6, 18, 160, 8
    width = left * 2 + len(counts) * (bar_w + gap)
    height = top + plot_h + 22
    peak = max(counts) if counts and max(counts) > 0 else 1
    parts = [
        f'<svg class="chart" role="img" aria-label="Звонки по часам" xmlns="http://www.w3.org/2000/svg" '
        f'width="100%" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="#9ca3af"/>',
    ]
    for hour, count in enumerate(counts):
        x = left + hour * (bar_w + gap)
        h = round(plot_h * count / peak, 1)
        y = top + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x}" y="{y}" width="{bar_w}" height="{h}" fill="#0f62fe">'
            f"<title>{hour:02d}:00–{hour:02d}:59 — {count}</title></rect>"
        )
        if count:
            parts.append(f'<text x="{x + bar_w / 2}" y="{y - 4}" font-size="11" text-anchor="middle">{count}</text>')
        parts.append(
            f'<text x="{x + bar_w / 2}" y="{top + plot_h + 15}" font-size="11" text-anchor="middle" '
            f'fill="#6b7280">{hour:02d}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def hbar_chart(rows: list[tuple[str, int, str]], label: str, color: str = "#0f62fe") -> Markup:
    """Horizontal bars: (label, value, text shown after the bar)."""
    label_w, bar_max, row_h, note_w = 200, 300, 26, 110
    width = label_w + bar_max + note_w
    height = max(1, len(rows)) * row_h + 6
    peak = max((value for _, value, _ in rows), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="100%" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet">'
    ]
    for i, (name, value, note) in enumerate(rows):
        y = 3 + i * row_h
        w = round(bar_max * value / peak, 1)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" font-size="13" text-anchor="end">{escape(name)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" fill="{color}">'
            f"<title>{escape(name)}: {value}</title></rect>"
            f'<text x="{label_w + w + 6}" y="{y + 17}" font-size="12">{escape(note)}</text>'
        )
    if not rows:
        parts.append(f'<text x="{label_w}" y="18" font-size="13" fill="#6b7280">нет данных</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


TREND_SERIES = (  # (DayRow field, legend, colour): the shares drawn on the trend chart
    ("automation_rate", "робот закончил сам", "#067647"),
    ("operator_share", "ответил оператор", "#0f62fe"),
    ("service_level", "уровень сервиса", "#b54708"),
)


def trend_chart(days: tuple[DayRow, ...] | list[DayRow]) -> Markup:
    """Calls per day as grey bars (left scale) and three shares 0–100 % as lines (right scale)."""
    left, right, top, plot_h, bottom, plot_w = 40, 44, 26, 180, 34, 900
    step = round(max(14, plot_w / max(1, len(days))), 2)  # a day's slot: the chart keeps its width
    bar_w = round(min(step - 4, 40), 2)
    width = left + right + step * max(1, len(days))
    height = top + plot_h + bottom
    peak = max((d.calls for d in days), default=0) or 1
    base = top + plot_h
    parts = [
        f'<svg class="chart trend" role="img" aria-label="Звонки и доли по дням" xmlns="http://www.w3.org/2000/svg" '
        f'width="100%" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet">',
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="#9ca3af"/>',
        f'<text x="{left - 4}" y="{top + 4}" font-size="11" text-anchor="end" fill="#6b7280">{peak}</text>',
        f'<text x="{width - right + 4}" y="{top + 4}" font-size="11" fill="#6b7280">100 %</text>',
        f'<text x="{width - right + 4}" y="{base}" font-size="11" fill="#6b7280">0 %</text>',
    ]
    label_every = max(1, -(-len(days) // 12))  # at most ~12 labels: "28 ноя" is wider than a day of a month
    for i, d in enumerate(days):
        x = left + i * step
        h = round(plot_h * d.calls / peak, 1)
        parts.append(
            f'<rect class="bar" x="{round(x + (step - bar_w) / 2, 2)}" y="{base - h}" width="{bar_w}" height="{h}" '
            f'fill="#d0d5dd">'
            f"<title>{formats.date_text(d.day)}: звонков {d.calls}</title></rect>"
        )
        if i % label_every == 0:
            parts.append(f'<text x="{round(x + step / 2, 2)}" y="{base + 14}" font-size="10" text-anchor="middle" '
                         f'fill="#6b7280">{formats.short_day_text(d.day)}</text>')
    for n, (field, legend, color) in enumerate(TREND_SERIES):
        points = [
            (round(left + i * step + step / 2, 2), round(base - plot_h * value, 1))
            for i, d in enumerate(days) if (value := getattr(d, field)) is not None
        ]
        if points:
            path = " ".join(f"{x},{y}" for x, y in points)
            parts.append(f'<polyline class="series series-{field}" points="{path}" fill="none" stroke="{color}" '
                         f'stroke-width="2"/>')
            parts.extend(f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>' for x, y in points)
        lx = left + n * 170
        parts.append(f'<rect x="{lx}" y="6" width="12" height="4" fill="{color}"/>'
                     f'<text x="{lx + 16}" y="12" font-size="11">{escape(legend)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _link(first: date, last: date) -> str:
    return "/stats?" + urlencode({"from": first.isoformat(), "to": last.isoformat()})


def _presets(today: date) -> list[tuple[str, str]]:
    yesterday = today - timedelta(days=1)
    return [
        ("Сегодня", _link(today, today)),
        ("Вчера", _link(yesterday, yesterday)),
        ("7 дней", _link(today - timedelta(days=6), today)),
        ("30 дней", _link(today - timedelta(days=29), today)),
    ]


def _tiles(s: CallStatistics) -> list[tuple[str, str, str]]:
    """(title, value, hint)"""
    return [
        ("Звонков", str(s.calls_total), f"из них известных клиентов: {s.known_customer_calls}"),
        ("Заказов роботом", str(s.ivr_orders), f"на сумму {formats.money_text(s.ivr_orders_amount)}"),
        ("Робот закончил сам", pct(s.automation_rate),
         f"{s.robot_finished} из {s.robot_answered} звонков, которые робот принял"),
        ("Доля заказов робота", pct(s.ivr_order_share),
         f"заказы робота / все заказы из звонков ({s.ivr_orders} из {s.orders_from_calls})"),
        ("Заказов на звонок клиента", pct(s.ivr_orders_per_known_customer_call),
         "заказы робота / звонки известных клиентов"),
        ("В очереди", str(s.queued_calls), f"ответили: {s.answered_calls}, сбросили: {s.abandoned_in_queue}"),
        ("Потерянные в очереди", pct(s.abandon_rate), "сбросили в очереди / вошли в очередь"),
        (f"Уровень сервиса ({s.service_level_seconds} с)", pct(s.service_level),
         f"ответ за {s.service_level_seconds} с или быстрее: {s.answered_within_service_level}"
         f" из {s.queued_calls}"),
        ("Ожидание (ср. / p90)", f"{secs(s.wait_all.average)} / {secs(s.wait_all.p90)}",
         "все звонки очереди с известным ожиданием"),
        ("Разговор (ср.)", secs(s.avg_talk_seconds), "звонки, принятые оператором"),
    ]


def _page_context(s: CallStatistics, period: Period, today: date) -> dict[str, Any]:
    query = urlencode({"from": period.label_from, "to": period.label_to})
    outcome_rows = [
        (OUTCOME_LABELS.get(outcome, outcome), count, f"{count} · {pct(count / s.calls_total)}")
        for outcome, count in s.calls_by_outcome
    ]
    funnel_rows = [
        (stage.label, stage.count,
         f"{stage.count}" + ("" if stage.share_of_previous is None else f" · {pct(stage.share_of_previous)}"))
        for stage in s.funnel
    ]
    return {
        "stats": s,
        "period": period,
        "presets": _presets(today),
        "tiles": _tiles(s),
        "outcomes": [
            (outcome, OUTCOME_LABELS.get(outcome, outcome), count, pct(count / s.calls_total))
            for outcome, count in s.calls_by_outcome
        ],
        "hour_svg": hour_chart(s.calls_per_hour),
        "outcome_svg": hbar_chart(outcome_rows, "Исходы звонков", "#067647"),
        "funnel_svg": hbar_chart(funnel_rows, "Воронка робота"),
        "trend_svg": trend_chart(s.days),
        "days": [(formats.date_text(d.day), d) for d in s.days],
        "automation_definition": AUTOMATION_DEFINITION,
        "finished_by": [(OUTCOME_LABELS.get(o, o), n) for o, n in s.robot_finished_by_outcome],
        "json_url": "/api/v1/stats?" + query,
        "csv_url": "/api/v1/stats.csv?" + query,
        "pct": pct,
        "secs": secs,
    }


@require("supervisor", "admin")
async def stats_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    today = _today(deps)
    try:
        period = parse_period(request.query, deps.timezone, today)
        error, status = None, 200
    except BadPeriod as exc:
        period = parse_period({}, deps.timezone, today)
        error, status = f"Неверный период: {exc.words}. Показан сегодняшний день.", 400
    stats = await _statistics(deps, period)
    return render(request, "stats.html", status=status, error=error, **_page_context(stats, period, today))


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/stats", stats_page)
    app.router.add_get("/api/v1/stats", stats_json)
    app.router.add_get("/api/v1/stats.csv", stats_csv)
