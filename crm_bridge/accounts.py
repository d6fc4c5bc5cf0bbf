"""Console accounts and server-side web sessions.

Passwords are argon2id hashes (argon2-cffi's ``PasswordHasher``; a hash made with older parameters
is replaced on the next successful sign-in). Usernames are stored casefolded, so ``Anna`` and
``anna`` are one account. A session row is keyed by the SHA-256 of the cookie's random token: the
token itself is never stored. Everything returned is a frozen dataclass, never an ORM object.

Hashing and verifying take tens of milliseconds of CPU on purpose: they run in a worker thread so
the event loop (calls, feeds) never waits on them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.db import SQLITE_BEGIN
from crm_bridge.models import User as UserRow
from crm_bridge.models import WebSession, utcnow

log = structlog.get_logger("crm_bridge.accounts")

ROLES = ("operator", "supervisor", "admin")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes anything, but an unbounded form field is a free CPU burner
_USERNAME = re.compile(r"^[\w.@-]{1,64}$")
_INTERFACE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*/\S{1,190}$")  # PJSIP/101, Local/101@agents/n
_UNSET: Any = object()


class AccountError(Exception):
    """Base of the account store's own errors (the message is fit to show an administrator)."""


class DuplicateUsername(AccountError):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} already exists")
        self.username = username


class InvalidAccount(AccountError):
    """A bad username, role, interface or password."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: str
    display_name: str
    operator_interface: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SessionRecord:
    id: str  # sha256 hex of the cookie token
    user_id: int
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


def normalize_username(username: str) -> str:
    return username.strip().casefold()


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidAccount(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def validate_interface(interface: str | None) -> str | None:
    interface = (interface or "").strip()
    if not interface:
        return None
    if not _INTERFACE.match(interface):
        raise InvalidAccount(f"bad queue member interface {interface!r}: expected e.g. PJSIP/101")
    return interface


def validate_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidAccount(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidAccount(f"the password must have at most {MAX_PASSWORD} characters")
    return password


def _account(row: UserRow) -> Account:
    return Account(
        id=row.id, username=row.username, role=row.role, display_name=row.display_name,
        operator_interface=row.operator_interface, active=row.active, created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _session(row: WebSession) -> SessionRecord:
    return SessionRecord(
        id=row.id, user_id=row.user_id, csrf_token=row.csrf_token, created_at=row.created_at,
        last_seen_at=row.last_seen_at, expires_at=row.expires_at, ip=row.ip, user_agent=row.user_agent,
    )


class AccountStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hasher: PasswordHasher | None = None) -> None:
        self.sessions = sessions
        self.hasher = hasher or PasswordHasher()
        self._dummy: tuple[PasswordHasher, str] | None = None

    @asynccontextmanager
    async def _unit(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            if write:
                # SQLite: take the write lock up front (see crm_bridge.db); ignored by PostgreSQL.
                await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            yield session

    # --- passwords --------------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, validate_password(password))

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)

    async def _dummy_hash(self) -> str:
        # A real hash with the current parameters, so an unknown username costs one full verify too.
        if self._dummy is None or self._dummy[0] is not self.hasher:
            self._dummy = (self.hasher, await asyncio.to_thread(self.hasher.hash, "dummy password, never valid"))
        return self._dummy[1]

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The active account with this username and password, else None, in about the same time
        whether the user is unknown, inactive or the password wrong."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            await self._verify(await self._dummy_hash(), "")
            return None
        key = normalize_username(username)
        row = None
        if key and len(key) <= 64:
            async with self._unit() as session:
                row = (await session.execute(select(UserRow).where(UserRow.username == key))).scalar_one_or_none()
        if row is None:
            await self._verify(await self._dummy_hash(), password)
            return None
        if not await self._verify(row.password_hash, password) or not row.active:
            return None
        if self.hasher.check_needs_rehash(row.password_hash):
            new_hash = await asyncio.to_thread(self.hasher.hash, password)
            async with self._unit(write=True) as session:
                await session.execute(
                    update(UserRow).where(UserRow.id == row.id, UserRow.password_hash == row.password_hash)
                    .values(password_hash=new_hash, updated_at=utcnow())
                )
                await session.commit()
            log.info("password_rehashed", user_id=row.id)
        return _account(row)

    # --- users ------------------------------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        password: str,
        role: str,
        display_name: str = "",
        operator_interface: str | None = None,
    ) -> Account:
        key = normalize_username(username)
        if not _USERNAME.match(key):
            raise InvalidAccount("the username must be 1..64 letters, digits or . _ @ -")
        validate_role(role)
        interface = validate_interface(operator_interface)
        password_hash = await self.hash_password(password)
        now = utcnow()
        row = UserRow(
            username=key, password_hash=password_hash, role=role, display_name=(display_name or "").strip()[:200],
            operator_interface=interface, active=True, created_at=now, updated_at=now,
        )
        try:
            async with self._unit(write=True) as session:
                exists = await session.scalar(select(UserRow.id).where(UserRow.username == key))
                if exists is not None:
                    raise DuplicateUsername(key)
                session.add(row)
                await session.commit()
        except IntegrityError as exc:  # a concurrent create of the same name
            raise DuplicateUsername(key) from exc
        log.info("user_created", user_id=row.id, username=key, role=role)
        return _account(row)

    async def get_user(self, user_id: int) -> Account | None:
        async with self._unit() as session:
            row = await session.get(UserRow, user_id)
            return None if row is None else _account(row)

    async def get_user_by_username(self, username: str) -> Account | None:
        async with self._unit() as session:
            row = (await session.execute(
                select(UserRow).where(UserRow.username == normalize_username(username))
            )).scalar_one_or_none()
            return None if row is None else _account(row)

    async def list_users(self) -> list[Account]:
        async with self._unit() as session:
            rows = (await session.execute(select(UserRow).order_by(UserRow.username))).scalars().all()
            return [_account(row) for row in rows]

    async def update_user(
        self,
        user_id: int,
        *,
        role: str = _UNSET,
        display_name: str = _UNSET,
        operator_interface: str | None = _UNSET,
        active: bool = _UNSET,
    ) -> Account | None:
        """Changes the given fields; deactivating also ends every session of the user (same transaction)."""
        values: dict[str, Any] = {}
        if role is not _UNSET:
            values["role"] = validate_role(role)
        if display_name is not _UNSET:
            values["display_name"] = (display_name or "").strip()[:200]
        if operator_interface is not _UNSET:
            values["operator_interface"] = validate_interface(operator_interface)
        if active is not _UNSET:
            values["active"] = bool(active)
        async with self._unit(write=True) as session:
            row = await session.get(UserRow, user_id)
            if row is None:
                return None
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            if values.get("active") is False:
                await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
            await session.commit()
            account = _account(row)
        log.info("user_updated", user_id=user_id, fields=sorted(values))
        return account

    async def set_password(self, user_id: int, password: str, *, end_sessions: bool = True) -> bool:
        """A new password (e.g. an administrator's reset); by default every session of the user ends."""
        password_hash = await self.hash_password(password)
        async with self._unit(write=True) as session:
            row = await session.get(UserRow, user_id)
            if row is None:
                return False
            row.password_hash = password_hash
            row.updated_at = utcnow()
            if end_sessions:
                await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
            await session.commit()
        log.info("password_set", user_id=user_id)
        return True

    # --- sessions ---------------------------------------------------------------------------------

    async def create_session(
        self,
        user_id: int,
        *,
        token_hash: str,
        csrf_token: str,
        expires_at: datetime,
        now: datetime | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SessionRecord:
        now = now or utcnow()
        row = WebSession(
            id=token_hash, user_id=user_id, csrf_token=csrf_token, created_at=now, last_seen_at=now,
            expires_at=expires_at, ip=(ip or None) and ip[:64], user_agent=(user_agent or None) and user_agent[:300],
        )
        async with self._unit(write=True) as session:
            session.add(row)
            await session.commit()
        return _session(row)

    async def session_user(self, token_hash: str) -> tuple[Account, SessionRecord] | None:
        """The session and its user, if the session exists and the user is active (expiry is the caller's)."""
        async with self._unit() as session:
            found = (await session.execute(
                select(UserRow, WebSession).join(WebSession, WebSession.user_id == UserRow.id)
                .where(WebSession.id == token_hash, UserRow.active.is_(True))
            )).one_or_none()
            if found is None:
                return None
            return _account(found[0]), _session(found[1])

    async def touch_session(self, token_hash: str, now: datetime | None = None) -> None:
        async with self._unit(write=True) as session:
            await session.execute(
                update(WebSession).where(WebSession.id == token_hash).values(last_seen_at=now or utcnow())
            )
            await session.commit()

    async def delete_session(self, token_hash: str) -> bool:
        async with self._unit(write=True) as session:
            result = await session.execute(delete(WebSession).where(WebSession.id == token_hash))
            await session.commit()
            return bool(result.rowcount)

    async def delete_user_sessions(self, user_id: int) -> int:
        async with self._unit(write=True) as session:
            result = await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
            await session.commit()
            return int(result.rowcount or 0)

    async def purge_sessions(self, *, now: datetime, idle: timedelta) -> int:
        """Deletes sessions past their absolute expiry or idle longer than ``idle``."""
        async with self._unit(write=True) as session:
            result = await session.execute(
                delete(WebSession).where((WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - idle))
            )
            await session.commit()
            return int(result.rowcount or 0)
