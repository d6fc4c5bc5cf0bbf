"""What a sync did, shaped like an import's report (crm_bridge/importers/report.py): counts per
entity and the records it could not map, each with the CRM's id and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SyncIssue:
    source: str
    entity: str
    external_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source} {self.entity} {self.external_id}: {self.reason}"


@dataclass
class EntityCounts:
    fetched: int = 0  # records the CRM returned (a record on two pages counts twice)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    pages: int = 0


@dataclass
class SyncReport:
    source: str
    full: bool = False
    counts: dict[str, EntityCounts] = field(default_factory=dict)
    issues: list[SyncIssue] = field(default_factory=list)
    # The one line saying why the run stopped (CRM down, 401, still throttled…); None: it finished.
    failure: str | None = None
    resumed: list[str] = field(default_factory=list)  # entities whose run continued a killed one
    # (customer_id, number, its issue): a phone left unattached because someone else owned it then;
    # tried again once every page of contacts is in (the owner may have given it up on a later page).
    unattached: list[tuple[str, str, SyncIssue]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def of(self, entity: str) -> EntityCounts:
        return self.counts.setdefault(entity, EntityCounts())

    def issue(self, entity: str, external_id: str, reason: str) -> None:
        self.issues.append(SyncIssue(self.source, entity, external_id, reason))
        self.of(entity).refused += 1

    def note(self, entity: str, external_id: str, reason: str) -> SyncIssue:
        """A record taken in part (a phone not attached): reported, not counted as refused."""
        issue = SyncIssue(self.source, entity, external_id, reason)
        self.issues.append(issue)
        return issue

    def summary(self) -> list[str]:
        lines = [
            f"{self.source} {entity}s: fetched {c.fetched}, created {c.created}, updated {c.updated}, "
            f"unchanged {c.unchanged}, not mapped {c.refused}"
            for entity, c in self.counts.items()
        ]
        if self.failure is not None:
            lines.append(f"{self.source}: sync stopped: {self.failure}")
        return lines
