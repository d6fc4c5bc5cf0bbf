"""One sync run: for each entity (contacts, products, deals, in that order), the pages since its
cursor, each mapped (pure) and written with the cursor moved past it (store.py).

Resumable: a run killed or stopped by the CRM between pages leaves ``run_page`` set; the next run
continues from there with the same filter, and its ``since`` becomes the stopped run's start mark,
so what changed meanwhile is read too. ``full`` forgets the cursors (the external refs stay, so
nothing is created twice). The robot never waits for any of this: a call reads only our store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import SQLAlchemyError

from crm_bridge.errors import StoreUnavailable
from crm_bridge.sync.client import CrmBadAnswer, SyncError
from crm_bridge.sync.records import ENTITIES, Entity, Mapped, Refusal
from crm_bridge.sync.report import SyncReport
from crm_bridge.sync.source import CrmSource, text
from crm_bridge.sync.store import PageWrite, SyncStore

log = structlog.get_logger(__name__)


class SyncRunner:
    def __init__(self, store: SyncStore, source: CrmSource) -> None:
        self.store = store
        self.source = source

    async def run(self, *, full: bool = False, entities: Sequence[Entity] = ENTITIES) -> SyncReport:
        """Never raises for the CRM or the database: the report's ``failure`` says why it stopped."""
        name = self.source.name
        report = SyncReport(name, full=full)
        entity = entities[0]
        try:
            for entity in entities:
                await self._entity(entity, full, report)
        except SyncError as exc:
            report.failure = f"{entity.value}s: {exc}"
            log.warning("sync.stopped", source=name, entity=entity.value, error=str(exc))
            with contextlib.suppress(StoreUnavailable, SQLAlchemyError, OSError):
                await self.store.record_error(name, entity.value, str(exc))
        except (StoreUnavailable, SQLAlchemyError, OSError) as exc:
            # The page's transaction rolled back: nothing of it is written, its cursor did not move.
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            report.failure = f"{entity.value}s: the database failed: {first}"
            log.warning("sync.stopped", source=name, entity=entity.value, error=f"database: {first}")
        log.info("sync.finished", source=name, full=full, ok=report.ok, issues=len(report.issues),
                 **{f"{e}_fetched": c.fetched for e, c in report.counts.items()})
        return report

    async def _entity(self, entity: Entity, full: bool, report: SyncReport) -> None:
        name = self.source.name
        if full:
            await self.store.forget_run(name, entity.value)
        cursor = await self.store.cursor(name, entity.value)
        if cursor.in_progress:
            report.resumed.append(entity.value)
            since, mark, token = cursor.run_since, cursor.run_mark, cursor.run_page
        else:
            since, mark, token = cursor.since, None, None
        counts = report.of(entity.value)
        while True:
            page = await self.source.page(entity, since, token)
            mark = mark or page.mark
            counts.fetched += len(page.records)
            counts.pages += 1
            items = [self._map(entity, raw) for raw in page.records]
            if page.next is not None and page.next == token:
                raise CrmBadAnswer(f"{entity.value}s: the CRM gave page {token} as its own next page")
            await self.store.write_page(name, self.source.prefix, entity, items, report,
                                        PageWrite(since, mark, page.next))
            if page.next is None:
                if entity == Entity.CONTACT:
                    await self.store.attach_freed(report)
                return
            token = page.next

    def _map(self, entity: Entity, raw: object) -> Mapped | Refusal:
        try:
            return self.source.map(entity, raw)  # type: ignore[arg-type]
        except Exception as exc:  # a record of a shape nobody documented: reported, the run goes on
            external_id = text(raw.get("ID") or raw.get("id")) if isinstance(raw, dict) else ""
            return Refusal(external_id or "?", f"unreadable record ({type(exc).__name__})")
