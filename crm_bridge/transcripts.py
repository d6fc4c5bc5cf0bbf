"""Transcripts of call recordings: the queue the transcription worker drains, and what it wrote (issue 12).

Life of a row (``transcripts`` table, ``crm_bridge.models.Transcript``)::

    recording.ready on the timeline ──(same transaction, crm_bridge.call_log)──► pending
    pending ──claim (lease, attempts+1)──► pending, leased ──finish──► done | empty | failed
                       ▲                         │ the worker died: the lease runs out
                       └─────────────────────────┘ (at most MAX_ATTEMPTS claims, then failed)

A claim takes rows ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and under the process's writer lock
with ``BEGIN IMMEDIATE`` on SQLite, like the outbox (crm_bridge.outbox.store): two workers never
take the same row, a restart takes again what a dead worker held once its lease ran out, and a row
that is finished is never claimed again. ``finish`` only settles a row the caller still holds
(``attempts`` as claimed): a worker whose lease ran out and was overtaken cannot overwrite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.db import sqlite_writer_lock, write_session
from crm_bridge.models import Call, Customer, TimelineEvent, Transcript

TRANSCRIPTS = Transcript.__table__
MAX_ERROR = 500
# A row claimed this often without an end (the worker died each time: a file that crashes the
# recognizer, a process killed by the OOM killer) is failed instead of taken again for ever.
MAX_ATTEMPTS = 3


class TranscriptState(StrEnum):
    PENDING = "pending"  # waiting for the worker (or leased by it)
    DONE = "done"  # words found
    EMPTY = "empty"  # the recording was read and holds no words (silence, music, a tone)
    FAILED = "failed"  # unreadable, missing, too long, or MAX_ATTEMPTS claims: ``error`` says which


@dataclass(frozen=True)
class TranscriptWord:
    word: str
    start: float  # seconds from the start of the recording
    end: float
    conf: float
    channel: int  # 0 = left / mono, 1 = right
    speaker: str  # "caller" | "robot" (stereo MixMonitor: left = caller, right = robot/operator) | ""

    def to_json(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end, "conf": self.conf,
                "channel": self.channel, "speaker": self.speaker}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TranscriptWord:
        return cls(str(data.get("word", "")), float(data.get("start", 0.0)), float(data.get("end", 0.0)),
                   float(data.get("conf", 1.0)), int(data.get("channel", 0)), str(data.get("speaker", "")))


@dataclass(frozen=True)
class TranscriptView:
    id: int
    call_id: str
    recording_path: str
    state: str
    language: str | None
    model: str | None
    text: str | None
    words: tuple[TranscriptWord, ...]
    channels: int | None
    audio_seconds: float | None
    work_seconds: float | None
    attempts: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class TranscriptJob:
    """A claimed row: what the worker needs to transcribe it and to put the result on the timelines."""

    id: int
    call_id: str
    recording_path: str
    attempts: int  # as the claim left it: ``finish`` must present it back
    customer_id: str | None  # external id of the call's customer (its timeline)
    language: str | None  # the call's language (call.started), when known


def event_uid(transcript_id: int) -> str:
    """The uid of a transcript's ``transcript.ready`` timeline row: the same for every attempt, so an
    event written before a crash and written again after the restart lands once."""
    return hashlib.sha256(f"transcript:{transcript_id}".encode()).hexdigest()[:32]


def pending_row(call_id: str, recording_path: str, now: datetime) -> dict[str, Any]:
    """The row crm_bridge.call_log inserts beside a ``recording.ready`` timeline row."""
    return {"call_id": call_id, "recording_path": recording_path[:500], "state": TranscriptState.PENDING.value,
            "attempts": 0, "created_at": now}


def transcript_view(row: Any) -> TranscriptView:
    return TranscriptView(
        id=row.id, call_id=row.call_id, recording_path=row.recording_path, state=row.state, language=row.language,
        model=row.model, text=row.text, words=tuple(TranscriptWord.from_json(w) for w in row.words or ()),
        channels=row.channels, audio_seconds=row.audio_seconds, work_seconds=row.work_seconds,
        attempts=row.attempts, error=row.error, created_at=row.created_at, finished_at=row.finished_at,
    )


def search_text(text: str) -> str:
    """What the calls search matches: lowercased here, in Python (SQLite's lower() is ASCII-only),
    ``ё`` as ``е`` (people type either), spaces around so a word can be matched whole."""
    return " " + " ".join(text.lower().replace("ё", "е").split()) + " "


class TranscriptStore:
    """Owns its transactions (one per method), returns DTOs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._writer_lock = sqlite_writer_lock(sessions.kw["bind"])

    def _write(self) -> AbstractAsyncContextManager[AsyncSession]:
        return write_session(self.sessions, self._writer_lock)

    async def claim(self, now: datetime, *, limit: int, lease: float) -> list[TranscriptJob]:
        """Up to ``limit`` pending rows, oldest first, leased for ``lease`` seconds. Rows claimed
        ``MAX_ATTEMPTS`` times already are failed here instead (their worker died on them)."""
        t = TRANSCRIPTS.c
        due = and_(t.state == TranscriptState.PENDING.value, or_(t.lease_until.is_(None), t.lease_until <= now))
        query = select(t.id, t.call_id, t.recording_path, t.attempts).where(due).order_by(t.id).limit(limit) \
            .with_for_update(skip_locked=True)
        async with self._write() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return []
            spent = [r.id for r in rows if r.attempts >= MAX_ATTEMPTS]
            if spent:
                await session.execute(update(TRANSCRIPTS).where(t.id.in_(spent)).values(
                    state=TranscriptState.FAILED.value, finished_at=now, lease_until=None,
                    error=f"gave up after {MAX_ATTEMPTS} attempts: the worker stopped during each of them"))
            rows = [r for r in rows if r.attempts < MAX_ATTEMPTS]
            if not rows:
                return []
            await session.execute(update(TRANSCRIPTS).where(t.id.in_([r.id for r in rows])).values(
                attempts=t.attempts + 1, lease_until=now + timedelta(seconds=lease)))
            call_ids = sorted({r.call_id for r in rows})
            customers = dict((await session.execute(
                select(Call.call_id, Customer.customer_id).join(Customer, Customer.id == Call.customer_id)
                .where(Call.call_id.in_(call_ids))
            )).all())
            starts = (await session.execute(
                select(TimelineEvent.call_id, TimelineEvent.customer_id, TimelineEvent.data)
                .where(TimelineEvent.call_id.in_(call_ids), TimelineEvent.kind == "call.started")
            )).all()
        languages: dict[str, str] = {}
        for call_id, customer_id, data in starts:
            if isinstance(data, dict) and isinstance(data.get("language"), str):
                languages.setdefault(call_id, data["language"])
            if customer_id and call_id not in customers:
                customers[call_id] = customer_id
        return [TranscriptJob(r.id, r.call_id, r.recording_path, r.attempts + 1, customers.get(r.call_id),
                              languages.get(r.call_id)) for r in rows]

    async def finish(self, job: TranscriptJob, now: datetime, *, state: TranscriptState, text: str = "",
                     words: Sequence[TranscriptWord] = (), language: str | None = None, model: str | None = None,
                     channels: int | None = None, audio_seconds: float | None = None,
                     work_seconds: float | None = None, error: str | None = None) -> bool:
        """Settle a claimed row; False when it is no longer ours (finished, or claimed again since)."""
        t = TRANSCRIPTS.c
        values: dict[str, Any] = {
            "state": state.value, "text": text or None, "search_text": search_text(text) if text else None,
            "words": [w.to_json() for w in words], "language": language, "model": model, "channels": channels,
            "audio_seconds": audio_seconds, "work_seconds": work_seconds, "finished_at": now, "lease_until": None,
            "error": error[:MAX_ERROR] if error else None,
        }
        async with self._write() as session:
            result = await session.execute(update(TRANSCRIPTS).where(
                t.id == job.id, t.state == TranscriptState.PENDING.value, t.attempts == job.attempts,
            ).values(**values))
            return bool(result.rowcount)

    async def extend(self, job: TranscriptJob, until: datetime) -> bool:
        """Keep holding a row still being transcribed; False when it is no longer ours."""
        t = TRANSCRIPTS.c
        async with self._write() as session:
            result = await session.execute(update(TRANSCRIPTS).where(
                t.id == job.id, t.state == TranscriptState.PENDING.value, t.attempts == job.attempts,
            ).values(lease_until=until))
            return bool(result.rowcount)

    async def release(self, job: TranscriptJob) -> None:
        """The worker is stopping before it finished ``job``: back in line at once, its attempt given back."""
        t = TRANSCRIPTS.c
        async with self._write() as session:
            await session.execute(update(TRANSCRIPTS).where(
                t.id == job.id, t.state == TranscriptState.PENDING.value, t.attempts == job.attempts,
            ).values(lease_until=None, attempts=t.attempts - 1))

    async def of_call(self, call_id: str) -> TranscriptView | None:
        """The call's newest transcript (a call has one recording; a re-announced file is the same row)."""
        async with self.sessions() as session:
            row = (await session.execute(
                select(TRANSCRIPTS).where(TRANSCRIPTS.c.call_id == call_id).order_by(TRANSCRIPTS.c.id.desc()).limit(1)
            )).first()
        return transcript_view(row) if row is not None else None

    async def items(self) -> list[TranscriptView]:
        """Every row in id order (tests, diagnostics)."""
        async with self.sessions() as session:
            rows = (await session.execute(select(TRANSCRIPTS).order_by(TRANSCRIPTS.c.id))).all()
        return [transcript_view(r) for r in rows]

    async def counts(self) -> dict[str, int]:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(TRANSCRIPTS.c.state, func.count()).group_by(TRANSCRIPTS.c.state))).all()
        return {state: n for state, n in rows}
