"""What an import did: counts per entity and the rows it refused, with file and line."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RowError:
    file: str
    line: int  # 1-based line (CSV) or row (XLSX) number; the header is line 1 in a plain file
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    """Counts are of entities (customers, products, orders), not rows: an order may span rows."""

    kind: str
    files: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, file: str, line: int, reason: str) -> None:
        self.errors.append(RowError(file, line, reason))

    def merge(self, other: ImportReport) -> ImportReport:
        """A combined report (the demo loads three files as one step)."""
        kind = self.kind if self.kind == other.kind else f"{self.kind}+{other.kind}"
        return ImportReport(
            kind=kind,
            files=[*self.files, *other.files],
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            errors=[*self.errors, *other.errors],
        )

    def summary(self) -> str:
        return (
            f"{self.kind}: created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
            f"errors {len(self.errors)}"
        )
