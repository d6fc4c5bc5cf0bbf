"""Read-only queries of the console: the searchable call list and the wallboard's counts of today.

Every function takes the ``async_sessionmaker`` (``CrmStore.sessions``), opens one short read-only
session and returns frozen DTOs. The filters are ANDed; each one narrows:

- ``date_from`` / ``date_to``: local calendar days (``timezone``), both inclusive;
- ``caller``: any Russian format (``8 916 123-45-67``, ``+7 (916) …``) is normalized to E.164 and
  matched exactly; fewer digits match anywhere in the number (``4567``, ``916 123``, ``8916``);
- ``customer``: an external customer id (exact) or words of the name (each word must start one of
  last name / first name / patronymic, case-insensitive also for Cyrillic on SQLite);
- ``outcome``: exact;
- ``operator``: the queue-member interface (``PJSIP/101``) or its short form (``101``);
- ``words``: words of the call's transcript (crm_bridge.transcripts), each one matched as the start
  of a word ("заказ" finds "заказать"), case-insensitive for Cyrillic too, ``ё`` = ``е``: LIKE on the
  lowercased ``search_text`` on both backends (migration 0011 says why not a tsvector).

Sorting is by a whitelisted key (``SORT_KEYS``: ``started``, ``caller``, ``customer``, ``outcome``,
``reason``, ``wait``, ``talk``, ``operator``, ``order``), ``-key`` for descending; anything else is the
default, newest first (``parse_sort``): a column name never reaches SQL from the query string. Empty
values go last either way, and ties are broken newest first, so pages never shuffle.
``iter_calls`` streams the same selection for the exports, at most ``limit`` rows.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.dto import CallView
from crm_bridge.models import Call, Customer, Order, Transcript
from crm_bridge.phones import normalize_phone
from crm_bridge.transcripts import search_text
from crm_bridge.views import call_view

MAX_PAGE = 200
# Sort keys of the call list -> the expression they order by (the whitelist: nothing else is sortable).
SORT_KEYS: dict[str, Any] = {
    "started": Call.started_at,
    "caller": Call.normalized_number,
    "customer": func.coalesce(Customer.last_name, Customer.customer_id),
    "outcome": Call.outcome,
    "reason": Call.reason,
    "wait": Call.wait_seconds,
    "talk": Call.talk_seconds,
    "operator": func.coalesce(Call.operator_name, Call.operator_interface),
    "order": Call.order_id,
}
DEFAULT_SORT = "-started"
_NON_DIGITS = re.compile(r"\D")


@dataclass(frozen=True)
class CallFilters:
    date_from: date | None = None
    date_to: date | None = None
    caller: str | None = None
    customer: str | None = None
    outcome: str | None = None
    operator: str | None = None
    words: str | None = None  # words of the transcript
    timezone: str = "Europe/Moscow"


@dataclass(frozen=True)
class CallRow:
    call: CallView
    customer_name: str | None  # "Иванов Алексей Сергеевич" when the call has a customer


@dataclass(frozen=True)
class CallPage:
    rows: tuple[CallRow, ...]
    total: int  # calls matching the filters, all pages
    limit: int
    offset: int


@dataclass(frozen=True)
class OrdersToday:
    day: date  # the local day counted
    ivr: int
    operator: int
    other: int  # imports and anything else placed today
    ivr_amount: Decimal
    operator_amount: Decimal

    @property
    def total(self) -> int:
        return self.ivr + self.operator + self.other


def local_day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, in UTC."""
    tz = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _caller_condition(raw: str) -> ColumnElement[bool] | None:
    text = raw.strip()
    if not text:
        return None
    number = normalize_phone(text)
    digits = _NON_DIGITS.sub("", text)
    if number is not None and len(digits) >= 10:
        return or_(Call.normalized_number == number, Call.caller_number == text)
    if not digits:
        # Not a number at all (e.g. "anonymous"): the raw caller id as Asterisk sent it.
        return Call.caller_number.like(f"%{_like_escape(text)}%", escape="\\")
    options: list[ColumnElement[bool]] = [
        Call.normalized_number.like(f"%{digits}%"),
        Call.caller_number.like(f"%{digits}%"),
    ]
    if digits[0] in "78" and len(digits) > 1:
        # A national prefix typed by hand: "8916…" / "7916…" is the start of "+7916…".
        options.append(Call.normalized_number.like(f"+7{digits[1:]}%"))
    return or_(*options)


def _case_variants(word: str) -> list[str]:
    """Spellings covering SQLite's ASCII-only case folding (names are stored capitalized)."""
    return sorted({word, word.lower(), word.upper(), word.capitalize()})


def _customer_condition(raw: str, dialect: str) -> ColumnElement[bool] | None:
    text = raw.strip()
    if not text:
        return None
    words = text.split()
    name_terms: list[ColumnElement[bool]] = []
    for word in words:
        pattern_word = _like_escape(word)
        per_word: list[ColumnElement[bool]] = []
        for column in (Customer.last_name, Customer.first_name, Customer.patronymic):
            if dialect == "postgresql":
                per_word.append(column.ilike(f"{pattern_word}%", escape="\\"))
            else:
                per_word.extend(column.like(f"{v}%", escape="\\") for v in _case_variants(pattern_word))
        name_terms.append(or_(*per_word))
    return or_(Customer.customer_id == text, and_(*name_terms))


def _operator_condition(raw: str) -> ColumnElement[bool] | None:
    text = raw.strip()
    if not text:
        return None
    if "/" in text:
        return Call.operator_interface == text
    short = _like_escape(text)
    # 'PJSIP/101' and 'Local/101@operator-agent/n' both answer to "101".
    return or_(
        Call.operator_interface == text,
        Call.operator_interface.like(f"%/{short}", escape="\\"),
        Call.operator_interface.like(f"%/{short}@%", escape="\\"),
    )


MAX_SEARCH_WORDS = 8


def _words_condition(raw: str) -> ColumnElement[bool] | None:
    """Calls whose transcript holds every word (as the start of a word; see the module doc)."""
    words = search_text(raw).split()[:MAX_SEARCH_WORDS]
    if not words:
        return None
    # search_text has a space before every word: " слово" matches a word's start, never its middle.
    return exists().where(
        Transcript.call_id == Call.call_id,
        *(Transcript.search_text.like(f"% {_like_escape(w)}%", escape="\\") for w in words),
    )


def _conditions(filters: CallFilters, dialect: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.date_from is not None:
        conditions.append(Call.started_at >= local_day_bounds(filters.date_from, filters.timezone)[0])
    if filters.date_to is not None:
        conditions.append(Call.started_at < local_day_bounds(filters.date_to, filters.timezone)[1])
    for condition in (
        _caller_condition(filters.caller or ""),
        _customer_condition(filters.customer or "", dialect),
        _operator_condition(filters.operator or ""),
        _words_condition(filters.words or ""),
    ):
        if condition is not None:
            conditions.append(condition)
    if filters.outcome:
        conditions.append(Call.outcome == filters.outcome.strip())
    return conditions


async def _dialect(session: AsyncSession) -> str:
    return (await session.connection()).dialect.name


def _name(customer: Customer | None) -> str | None:
    if customer is None:
        return None
    return " ".join(p for p in (customer.last_name, customer.first_name, customer.patronymic) if p) or None


def parse_sort(value: Any) -> str:
    """``value`` when it names a whitelisted key (``"wait"``, ``"-wait"``), else ``DEFAULT_SORT``."""
    text = str(value or "").strip()
    return text if text.removeprefix("-") in SORT_KEYS else DEFAULT_SORT


def _order_by(sort: str) -> list[Any]:
    sort = parse_sort(sort)
    column = SORT_KEYS[sort.removeprefix("-")]
    direction = column.desc() if sort.startswith("-") else column.asc()
    # NULLs last on both backends (PostgreSQL puts them first in DESC, SQLite first in ASC).
    return [column.is_(None), direction, Call.started_at.desc(), Call.call_id.desc()]


def _selection(filters: CallFilters, dialect: str) -> Any:
    base = select(Call, Customer).outerjoin(Customer, Customer.id == Call.customer_id)
    where = _conditions(filters, dialect)
    return base.where(*where) if where else base


def _row(call: Call, customer: Customer | None) -> CallRow:
    return CallRow(call=call_view(call, customer.customer_id if customer else None), customer_name=_name(customer))


async def iter_calls(
    sessions: async_sessionmaker[AsyncSession], filters: CallFilters, *, sort: str = DEFAULT_SORT, limit: int
) -> AsyncIterator[CallRow]:
    """The calls matching ``filters`` in ``sort`` order, at most ``limit``, streamed (the exports)."""
    async with sessions() as session:
        stmt = _selection(filters, await _dialect(session)).order_by(*_order_by(sort)).limit(max(0, int(limit)))
        result = await session.stream(stmt.execution_options(yield_per=1000))
        async for call, customer in result:
            yield _row(call, customer)


async def search_calls(
    sessions: async_sessionmaker[AsyncSession],
    filters: CallFilters,
    *,
    limit: int = 50,
    offset: int = 0,
    sort: str = DEFAULT_SORT,
) -> CallPage:
    """One page of the calls matching ``filters`` in ``sort`` order, with the total count."""
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    async with sessions() as session:
        where = _conditions(filters, await _dialect(session))
        base = select(Call, Customer).outerjoin(Customer, Customer.id == Call.customer_id)
        count = select(func.count()).select_from(Call).outerjoin(Customer, Customer.id == Call.customer_id)
        if where:
            base = base.where(*where)
            count = count.where(*where)
        total = int((await session.execute(count)).scalar_one())
        stmt = base.order_by(*_order_by(sort)).limit(limit).offset(offset)
        rows = (await session.execute(stmt)).all()
    return CallPage(
        rows=tuple(_row(call, customer) for call, customer in rows),
        total=total,
        limit=limit,
        offset=offset,
    )


async def call_with_customer(sessions: async_sessionmaker[AsyncSession], call_id: str) -> CallRow | None:
    """One call and its customer's name (the call page's header)."""
    async with sessions() as session:
        stmt = (
            select(Call, Customer)
            .outerjoin(Customer, Customer.id == Call.customer_id)
            .where(Call.call_id == call_id)
        )
        row = (await session.execute(stmt)).first()
    if row is None:
        return None
    call, customer = row
    return CallRow(call=call_view(call, customer.customer_id if customer else None), customer_name=_name(customer))


@dataclass(frozen=True)
class CallOrder:
    """An order placed in a call (by the robot or by the operator who took it)."""

    order_id: str
    customer_id: str
    source: str  # "ivr" | "operator"
    ordered_at: datetime
    total: Decimal


async def orders_of_call(sessions: async_sessionmaker[AsyncSession], call_id: str) -> list[CallOrder]:
    """The orders whose ``call_id`` is this call, oldest first: the call page links each one."""
    async with sessions() as session:
        stmt = (
            select(Order.order_id, Customer.customer_id, Order.source, Order.ordered_at, Order.total)
            .join(Customer, Customer.id == Order.customer_id)
            .where(Order.call_id == call_id)
            .order_by(Order.ordered_at, Order.id)
        )
        return [CallOrder(*row) for row in (await session.execute(stmt)).all()]


async def known_outcomes(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Outcomes present in the call log (the filter's choices besides the well-known ones)."""
    async with sessions() as session:
        stmt = select(Call.outcome).where(Call.outcome.is_not(None)).distinct().order_by(Call.outcome)
        return [o for o in (await session.execute(stmt)).scalars() if o]


async def known_operators(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str | None]]:
    """(interface, last known name) of every operator that ever answered a call."""
    async with sessions() as session:
        stmt = (
            select(Call.operator_interface, func.max(Call.operator_name))
            .where(Call.operator_interface.is_not(None))
            .group_by(Call.operator_interface)
            .order_by(Call.operator_interface)
        )
        return [(i, n) for i, n in (await session.execute(stmt)).all()]


async def orders_today(
    sessions: async_sessionmaker[AsyncSession], timezone: str, *, now: datetime | None = None
) -> OrdersToday:
    """Orders placed during the current local day, by source (IVR robot vs operator)."""
    moment = (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone))
    start, end = local_day_bounds(moment.date(), timezone)
    async with sessions() as session:
        stmt = (
            select(Order.source, func.count(), func.coalesce(func.sum(Order.total), literal(0)))
            .where(Order.ordered_at >= start, Order.ordered_at < end)
            .group_by(Order.source)
        )
        rows = (await session.execute(stmt)).all()
    counts: dict[str, tuple[int, Decimal]] = {
        source: (int(n), Decimal(str(amount)).quantize(Decimal("0.01"))) for source, n, amount in rows
    }
    zero = (0, Decimal("0.00"))
    other = sum(n for source, (n, _) in counts.items() if source not in ("ivr", "operator"))
    return OrdersToday(
        day=moment.date(),
        ivr=counts.get("ivr", zero)[0],
        operator=counts.get("operator", zero)[0],
        other=other,
        ivr_amount=counts.get("ivr", zero)[1],
        operator_amount=counts.get("operator", zero)[1],
    )


def parse_day(value: Any) -> date | None:
    """``YYYY-MM-DD`` (an HTML date input) or ``DD.MM.YYYY``; None when empty or unreadable."""
    text = str(value or "").strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None
