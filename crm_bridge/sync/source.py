"""What the runner needs of a CRM: pages of raw records since a cursor, and a pure mapping of each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from crm_bridge.sync.records import Entity, Mapped, Refusal


@dataclass(frozen=True)
class RawPage:
    records: tuple[Mapping[str, Any], ...]
    next: str | None  # the token of the next page (Bitrix24 ``next`` offset, amoCRM page number); None: last
    # The CRM's own clock when it answered (Bitrix24 ``time.date_start``, amoCRM's ``Date`` header), in
    # the form its filter takes back: the first page's becomes the next run's ``since``.
    mark: str | None


class CrmSource(Protocol):
    name: str  # "bitrix24" | "amocrm": external_refs.source, sync_cursors.source
    prefix: str  # of the local keys it creates: customer "B24-17", product "B24-P5", order "B24-D9"

    async def page(self, entity: Entity, since: str | None, token: str | None) -> RawPage:
        """One page of ``entity`` modified at or after ``since`` (None: all), from ``token`` (None: the first)."""
        ...

    def map(self, entity: Entity, raw: Mapping[str, Any]) -> Mapped | Refusal: ...

    async def close(self) -> None: ...


def text(value: Any) -> str:
    """A CRM field as trimmed text ("" for null)."""
    return "" if value is None else str(value).strip()
