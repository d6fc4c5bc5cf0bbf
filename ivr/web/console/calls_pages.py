"""The call log in the console: the searchable list, one call with its timeline, its recording.

- ``GET /calls`` — any signed-in role. Filters (query string): ``from`` / ``to`` (local days,
  inclusive), ``caller`` (any Russian format or a few digits), ``customer`` (id or name),
  ``outcome``, ``operator`` (``PJSIP/101`` or ``101``), ``words`` (words of the transcript:
  supervisors and admins only, like the transcript itself), ``page``, ``sort`` (a column key, ``-key``
  descending: ``crm_bridge.call_search.SORT_KEYS``; the column headers are the links). Newest first
  by default, 50 a page.
- ``GET /calls.csv`` / ``GET /calls.xlsx`` — supervisors and admins: the current filter and sort as a
  file, at most 100 000 rows (``calls_export``).
- ``GET /calls/{call_id}`` — any signed-in role: the call's fields, its timeline in order, the
  transcript when a sidecar file exists (``<recording>.txt`` / ``.json``, or the recording's name
  with ``.txt`` / ``.json`` instead of its extension), and the player
  ``<audio controls preload="metadata">``. Player and transcript are for supervisors and admins
  only: operators see every call and its timeline, never the recording nor its words.
- ``GET /calls/{call_id}/recording`` (``?format=mp3``: an MP3 copy, ``ivr.calls.recording_mp3``)
  — supervisors and admins: the file itself, confined to
  ``deps.recordings_dir`` by ``RecordingLocator`` (no ``..``, no other absolute path, symlinks
  resolved; any refusal is a plain 404), served by aiohttp's FileResponse, so HTTP Range works
  (206 + Content-Range, 416 when unsatisfiable) and the browser can seek.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from crm_bridge.call_search import (
    DEFAULT_SORT,
    CallFilters,
    call_with_customer,
    known_operators,
    known_outcomes,
    orders_of_call,
    parse_day,
    parse_sort,
    search_calls,
)
from crm_bridge.transcripts import TranscriptState, TranscriptStore
from ivr.calls.recordings import RecordingLocator
from ivr.web.common import ROLE_RANK
from ivr.web.console import formats
from ivr.web.console.auth import current_user, require
from ivr.web.console.calls_export import MAX_ROWS, calls_csv, calls_xlsx
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import HANGUP_LABELS, ORDER_SOURCES, OUTCOME_LABELS, event_label, outcome_label, reason_text
from ivr.web.console.recording_peaks import cached_peaks
from ivr.web.console.render import render
from ivr.web.console.timeline_text import duration, event_text

log = structlog.get_logger("ivr.web.calls")

PAGE_SIZE = 50
MAX_CALL_ID = 64  # calls.call_id is String(64)
TRANSCRIPT_MAX_BYTES = 512 * 1024
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".gsm": "audio/x-gsm"}





def can_listen(user: Any) -> bool:
    """Supervisors and admins hear recordings; operators do not."""
    role = getattr(user, "role", None)
    return ROLE_RANK.get(role or "", 0) >= ROLE_RANK["supervisor"]


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    """A moment of the call in business time, to the second: "28 ноября 2026, 23:30:05"."""
    return formats.datetime_text(moment, zone, seconds=True)


def query_filters(query: Any, timezone: str) -> tuple[CallFilters, dict[str, str], list[str]]:
    """Filters from the query string, the values to show back in the form, and the problems."""
    form = {
        k: "".join(ch for ch in str(query.get(k, "")) if ch.isprintable()).strip()[:100]
        for k in ("from", "to", "caller", "customer", "outcome", "operator", "words")
    }
    errors = []
    days: dict[str, date | None] = {}
    for key in ("from", "to"):
        days[key] = parse_day(form[key])
        if form[key] and days[key] is None:
            errors.append(f"Дата «{form[key]}» не распознана: нужна ГГГГ-ММ-ДД или ДД.ММ.ГГГГ.")
            form[key] = ""
    filters = CallFilters(
        date_from=days["from"], date_to=days["to"], caller=form["caller"] or None, customer=form["customer"] or None,
        outcome=form["outcome"] or None, operator=form["operator"] or None, words=form["words"] or None,
        timezone=timezone,
    )
    return filters, form, errors


def _valid_call_id(call_id: str) -> bool:
    """Call ids are Asterisk linkedids (``1700000000.123``): short, printable; anything else is no call
    (PostgreSQL refuses NUL in text: it must never reach the database)."""
    return 0 < len(call_id) <= MAX_CALL_ID and call_id.isprintable()


def _page_number(query: Any) -> int:
    try:
        return max(1, min(int(query.get("page", "1")), 100_000))
    except ValueError:
        return 1


def _row(row: Any, zone: ZoneInfo) -> dict[str, Any]:
    call = row.call
    return {
        "call_id": call.call_id,
        "started": _local(call.started_at, zone),
        "caller": call.caller_number or call.normalized_number or "скрыт",
        "normalized": call.normalized_number,
        "customer_id": call.customer_id,
        "customer_name": row.customer_name,
        "outcome": call.outcome,
        "outcome_label": outcome_label(call.outcome),
        "reason": call.reason,
        "reason_label": reason_text(call.reason),
        "wait": duration(call.wait_seconds),
        "talk": duration(call.talk_seconds),
        "operator": call.operator_name or call.operator_interface,
        "operator_interface": call.operator_interface,
        "order_id": call.order_id,
        "has_recording": bool(call.recording_path),
    }


async def calls_list(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    zone = ZoneInfo(deps.timezone)
    filters, form, errors = query_filters(request.query, deps.timezone)
    listen = can_listen(current_user(request))
    if not listen:  # the transcript is the recording's words: no search in what one may not hear
        filters, form["words"] = dataclasses.replace(filters, words=None), ""
    page_no = _page_number(request.query)
    sort = parse_sort(request.query.get("sort"))
    sessions = deps.store.sessions
    page = await search_calls(sessions, filters, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE, sort=sort)
    outcomes = sorted(set(OUTCOME_LABELS) | set(await known_outcomes(sessions)))
    operators = await known_operators(sessions)
    pages = max(1, -(-page.total // PAGE_SIZE))
    kept = {k: v for k, v in form.items() if v}
    if sort != DEFAULT_SORT:
        kept["sort"] = sort

    def page_url(number: int) -> str:
        return "/calls?" + urlencode({**kept, "page": str(number)})

    return render(
        request,
        "calls.html",
        rows=[_row(r, zone) for r in page.rows],
        form=form,
        errors=errors,
        total=page.total,
        page_no=page_no,
        pages=pages,
        prev_url=page_url(page_no - 1) if page_no > 1 else None,
        next_url=page_url(page_no + 1) if page_no < pages else None,
        outcome_choices=[(o, outcome_label(o)) for o in outcomes],
        operator_choices=[(i, f"{n} ({i})" if n else i) for i, n in operators],
        can_listen=listen,
        timezone=deps.timezone,
        sort_links=_sort_links(form, sort),
        export_query=urlencode(kept),
        can_export=listen,
        export_truncated=page.total > MAX_ROWS,
        export_max=f"{MAX_ROWS:,}".replace(",", formats.NBSP),
    )


SORT_COLUMNS = (  # (sort key, header) in the table's order; "Запись" is not sortable
    ("started", "Начало"), ("caller", "Номер"), ("customer", "Клиент"), ("outcome", "Итог"),
    ("reason", "Причина"), ("wait", "Ожидание"), ("talk", "Разговор"), ("operator", "Оператор"),
    ("order", "Заказ"),
)


def _sort_links(form: dict[str, str], sort: str) -> list[dict[str, str]]:
    """One header per sortable column: its link (same filters, first page), arrow and aria-sort.
    A click on the current column flips its direction; another column starts ascending, except
    the start time, whose natural order is newest first."""
    kept = {k: v for k, v in form.items() if v}
    current, descending = sort.removeprefix("-"), sort.startswith("-")
    links = []
    for key, title in SORT_COLUMNS:
        if key == current:
            target = key if descending else f"-{key}"
            arrow, aria = ("↓", "descending") if descending else ("↑", "ascending")
        else:
            target = f"-{key}" if key == "started" else key
            arrow, aria = "", "none"
        query = urlencode({**kept, **({"sort": target} if target != DEFAULT_SORT else {})})
        links.append({"key": key, "title": title, "url": "/calls" + (f"?{query}" if query else ""),
                      "arrow": arrow, "aria": aria})
    return links


def _sidecars(recording: Path) -> list[Path]:
    """Where a transcript of ``recording`` may be: beside it, with .txt/.json appended or replacing."""
    names = [recording.name + ".txt", recording.name + ".json"]
    if recording.suffix:
        names += [recording.stem + ".txt", recording.stem + ".json"]
    return [recording.with_name(n) for n in names]


def _read_confined(path: Path, locator: RecordingLocator) -> str | None:
    local = locator.local_path(path)
    if local is None:
        return None
    try:
        fd = os.open(local, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(TRANSCRIPT_MAX_BYTES + 1)
    if len(data) > TRANSCRIPT_MAX_BYTES:
        data = data[:TRANSCRIPT_MAX_BYTES]
    return data.decode("utf-8", errors="replace")


def _transcript_lines(text: str, is_json: bool) -> list[dict[str, str]]:
    """Lines of a transcript: plain text as is; JSON as {"text"}, {"segments": [...]}, or a list."""
    if not is_json:
        return [{"who": "", "at": "", "text": line} for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except ValueError:
        return [{"who": "", "at": "", "text": line} for line in text.splitlines() if line.strip()]
    segments: Any = data
    if isinstance(data, dict):
        segments = data.get("segments") or data.get("utterances") or data.get("text") or []
    if isinstance(segments, str):
        return [{"who": "", "at": "", "text": line} for line in segments.splitlines() if line.strip()]
    lines = []
    for item in segments if isinstance(segments, list) else []:
        if isinstance(item, str):
            lines.append({"who": "", "at": "", "text": item})
        elif isinstance(item, dict) and item.get("text"):
            start = item.get("start")
            at = duration(start) if isinstance(start, int | float) else ""
            who = str(item.get("speaker") or item.get("channel") or item.get("who") or "")
            line = {"who": who, "at": at, "text": str(item["text"])}
            if isinstance(start, int | float) and start >= 0:
                line["start"] = f"{float(start):.2f}"  # the player's hook: click to hear this line
            lines.append(line)
    return lines


def load_transcript(recording_path: str | None, recordings_dir: Path) -> list[dict[str, str]] | None:
    """The transcript lines of a recording, or None when there is no (readable) sidecar file."""
    if not recording_path:
        return None
    locator = RecordingLocator(recordings_dir)
    recording = locator.local_path(recording_path)
    if recording is None:
        return None
    for sidecar in _sidecars(recording):
        text = _read_confined(sidecar, locator)
        if text is not None:
            return _transcript_lines(text, sidecar.suffix == ".json")
    return None


SPEAKER_LABELS = {"caller": "Клиент", "robot": "Робот / оператор"}
LINE_PAUSE = 1.5  # seconds of silence that start a new line of the transcript


def transcript_lines(words: Any) -> list[dict[str, Any]]:
    """The stored words as lines: a new line when the speaker changes or after a pause; every word
    keeps its times so the player can light it up while it is said."""
    lines: list[dict[str, Any]] = []
    last_end, last_speaker = None, None
    for w in words:
        if not lines or w.speaker != last_speaker or (last_end is not None and w.start - last_end > LINE_PAUSE):
            lines.append({"who": SPEAKER_LABELS.get(w.speaker, ""), "at": duration(w.start),
                          "start": f"{w.start:.2f}", "words": [], "text": ""})
        lines[-1]["words"].append({"word": w.word, "start": f"{w.start:.2f}", "end": f"{w.end:.2f}"})
        lines[-1]["text"] = (lines[-1]["text"] + " " + w.word).strip()
        last_end, last_speaker = w.end, w.speaker
    return lines


async def call_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    zone = ZoneInfo(deps.timezone)
    call_id = request.match_info["call_id"]
    row = await call_with_customer(deps.store.sessions, call_id) if _valid_call_id(call_id) else None
    if row is None:
        return render(request, "call.html", status=404, call=None, call_id=call_id, fields=[], events=[],
                      transcript=None, transcript_state=None, player=False, info=None, orders=[])
    call = row.call
    events = await deps.store.call_timeline(call_id)
    listen = can_listen(current_user(request))
    # The transcript is the recording's words: shown to those who may hear the recording. The worker's
    # (crm_bridge.transcripts) first; a sidecar file beside the recording otherwise.
    stored = await TranscriptStore(deps.store.sessions).of_call(call_id) if listen else None
    transcript_state = None
    if stored is not None and stored.state == TranscriptState.DONE:
        transcript: list[dict[str, Any]] | None = transcript_lines(stored.words)
    else:
        transcript = load_transcript(call.recording_path, deps.recordings_dir) if listen else None
        if stored is not None and not transcript:
            transcript_state = {"state": stored.state, "error": stored.error}
    info = _row(row, zone)
    fields = [
        ("Начало", _local(call.started_at, zone)),
        ("Конец", _local(call.ended_at, zone) or "идёт"),
        ("Номер", call.caller_number or "скрыт"),
        ("Номер (E.164)", call.normalized_number or "—"),
        ("Итог", outcome_label(call.outcome)),
        ("Причина", reason_text(call.reason) or "—"),
        ("Очередь", call.queue or "—"),
        ("В очереди с", _local(call.queue_entered_at, zone) or "—"),
        ("Ожидание", duration(call.wait_seconds)),
        ("Ответ оператора", _local(call.answered_at, zone) or "—"),
        ("Разговор", duration(call.talk_seconds)),
        ("Оператор", " ".join(x for x in (call.operator_name, f"({call.operator_interface})"
                                           if call.operator_interface else None) if x) or "—"),
        ("Положил трубку", HANGUP_LABELS.get(call.hangup_by or "", "—")),
        ("Переводы", str(call.transfers or 0)),
        ("Запись", duration(call.recording_seconds) if call.recording_path else "нет"),
    ]
    timeline = [
        {
            "seq": e.seq,
            "at": formats.time_text(e.at, zone),
            "kind": e.kind,
            "label": event_label(e.kind),
            "text": event_text(e.kind, e.data, zone),
        }
        for e in events
    ]
    orders = [
        {"order_id": o.order_id, "customer_id": o.customer_id, "source": o.source,
         "source_label": ORDER_SOURCES.get(o.source, o.source),
         "at": formats.time_text(o.ordered_at, zone), "total": formats.money_text(o.total)}
        for o in await orders_of_call(deps.store.sessions, call_id)
    ]
    return render(request, "call.html", call=call, call_id=call_id, info=info, fields=fields, events=timeline,
                  transcript=transcript, transcript_state=transcript_state,
                  player=listen and bool(call.recording_path), orders=orders)


async def call_recording_peaks(request: web.Request) -> web.Response:
    """The waveform of the call's recording (``recording_peaks``); 404 when there is none to draw:
    no recording, or not PCM WAV (the player then decodes the file itself)."""
    local = await _recording_file(request)
    peaks = await asyncio.to_thread(cached_peaks, local)
    if peaks is None:
        raise web.HTTPNotFound(reason="no waveform for this recording")
    return web.json_response(peaks, headers={"Cache-Control": "private, max-age=300"})


async def _recording_file(request: web.Request) -> Path:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    call_id = request.match_info["call_id"]
    call = await deps.store.get_call(call_id) if _valid_call_id(call_id) else None
    if call is None or not call.recording_path:
        raise web.HTTPNotFound(reason="no recording for this call")
    local = RecordingLocator(deps.recordings_dir).local_path(call.recording_path)
    if local is None or not local.is_file():
        log.warning("recording_not_served", call_id=call_id, path=call.recording_path[:300],
                    refused=local is None)
        raise web.HTTPNotFound(reason="no recording for this call")
    return local


async def served_file(request: web.Request, local: Path) -> Path:
    """``local``, or its MP3 copy when the query asks ``format=mp3`` (404 when none can be had);
    any other format is a 400 (the recording is served as it is, or as MP3)."""
    wanted = request.query.get("format", "").lower()
    if not wanted or wanted == local.suffix.lower().lstrip("."):
        return local
    if wanted != "mp3":
        raise web.HTTPBadRequest(reason="format: mp3 or nothing")
    deps: ConsoleDeps = request.app[DEPS_KEY]
    copy = await deps.recording_mp3.copy_of(local) if deps.recording_mp3 is not None else None
    if copy is None:
        raise web.HTTPNotFound(reason="no MP3 of this recording")
    return copy


async def call_recording(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["call_id"]
    local = await served_file(request, await _recording_file(request))
    headers = {
        "Content-Type": AUDIO_TYPES.get(local.suffix.lower(), "application/octet-stream"),
        "Cache-Control": "private, max-age=300",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{_ascii_name(call_id)}{local.suffix.lower()}"',
    }
    user = current_user(request)
    log.info("recording_served", call_id=call_id, user=getattr(user, "username", None),
             range=request.headers.get("Range"))
    return web.FileResponse(local, headers=headers)


def _ascii_name(call_id: str) -> str:
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in call_id)
    return safe.strip(".")[:80] or "recording"


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/calls", require("operator", "supervisor", "admin")(calls_list))
    app.router.add_get("/calls.csv", require("supervisor", "admin")(calls_csv))
    app.router.add_get("/calls.xlsx", require("supervisor", "admin")(calls_xlsx))
    app.router.add_get("/calls/{call_id}", require("operator", "supervisor", "admin")(call_page))
    app.router.add_get("/calls/{call_id}/recording", require("supervisor", "admin")(call_recording))
    app.router.add_get("/calls/{call_id}/recording/peaks", require("supervisor", "admin")(call_recording_peaks))
