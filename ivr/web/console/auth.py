"""Sign-in, roles and sessions of the console.

* Passwords: argon2id (crm_bridge.accounts); an unknown username costs one verify of a dummy hash.
* Sessions live in the database (``web_sessions``, keyed by the SHA-256 of the cookie token). The
  ``ivr_session`` cookie is HttpOnly, SameSite=Lax, Path=/ and Secure unless ``cookie_secure`` is
  off. Every sign-in makes a NEW session (a cookie from before is never promoted, and its session
  is deleted); sign-out deletes the row and the cookie. A session ends after ``session_hours``
  without a request and at the latest ``ABSOLUTE_LIFETIME`` after sign-in; deactivating a user or
  resetting their password ends all their sessions.
* CSRF: one random token per session, required (hmac.compare_digest) on every POST/PUT/PATCH/DELETE
  made with the session: the hidden ``csrf_token`` form field or the ``X-CSRF-Token`` header
  (console.js sends it). A foreign Origin (or Referer) is refused as well. The sign-in form has its
  own double-submit token (``ivr_login`` cookie), since no session exists yet.
* Sign-in throttle (ivr.web.console.login_throttle): growing delays after failed passwords, per
  username and per client address, so one person's typos never lock out the rest of their office.
  A refused attempt is answered 429 with Retry-After and the wait in words, and logged as one
  ``login_throttled`` line (username, address, scope; never the password). The counters are in
  memory, PER PROCESS (several processes behind a balancer each count on their own). The address
  is the TCP peer's, or behind a reverse proxy listed in ``web.trusted_proxies`` the client's
  from X-Forwarded-For (ivr.web.client_address).
* Roles: operator < supervisor < admin; a role has every permission of the roles below it.
  ``require(*roles)`` guards pages and handlers; the API's table is ``SESSION_API_POLICY`` in
  ivr.web.common.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import structlog
from aiohttp import web

from crm_bridge.accounts import ROLES, Account, AccountError, AccountStore, normalize_username
from crm_bridge.models import utcnow
from ivr.web.client_address import client_address
from ivr.web.common import (
    AUTH_KIND_KEY,
    CSRF_KEY,
    REQUIRED_ROLES_ATTR,
    ROLE_RANK,
    UNSAFE_METHODS,
    USER_KEY,
    api_error,
    csrf_matches,
    role_allows,
    same_origin,
    to_json,
)
from ivr.web.console.deps import ConsoleDeps
from ivr.web.console.login_throttle import LoginThrottle, Refusal
from ivr.web.console.render import render

log = structlog.get_logger("ivr.web.auth")

COOKIE = "ivr_session"
LOGIN_COOKIE = "ivr_login"
ABSOLUTE_LIFETIME = timedelta(days=7)
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session
HOME = {"operator": "/operator", "supervisor": "/calls", "admin": "/calls"}
ROLE_NAMES = {"operator": "Оператор", "supervisor": "Старший смены", "admin": "Администратор"}

_SESSION_KEY = web.RequestKey("ivr_session", Any)  # the SessionRecord
_CLEAR_COOKIE_KEY = web.RequestKey("ivr_clear_session_cookie", bool)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    role: str  # operator | supervisor | admin
    display_name: str
    operator_interface: str | None  # the operator's queue member interface, e.g. "PJSIP/101"

    @classmethod
    def of(cls, account: Account) -> User:
        return cls(account.id, account.username, account.role, account.display_name, account.operator_interface)


def current_user(request: web.Request) -> User | None:
    return request.get(USER_KEY)


def csrf_token(request: web.Request) -> str:
    """The session's CSRF token; "" without a session."""
    return request.get(CSRF_KEY, "")


# --- state ------------------------------------------------------------------------------------------


@dataclass
class AuthState:
    accounts: AccountStore
    deps: ConsoleDeps
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    clock: Callable[[], datetime] = utcnow  # sessions and the throttle; tests move time by replacing it

    @property
    def idle_lifetime(self) -> timedelta:
        return timedelta(hours=float(self.deps.session_hours))

    async def load(self, raw_token: str) -> tuple[User, Any] | None:
        """The user of a session cookie, or None (unknown, expired, idle too long, user inactive)."""
        if not _TOKEN.match(raw_token):
            return None
        token_hash = _hash(raw_token)
        found = await self.accounts.session_user(token_hash)
        if found is None:
            return None
        account, record = found
        now = self.clock()
        if now >= record.expires_at or now - record.last_seen_at >= self.idle_lifetime:
            await self.accounts.delete_session(token_hash)
            log.info("session_expired", user_id=account.id)
            return None
        if now - record.last_seen_at >= TOUCH_EVERY:
            await self.accounts.touch_session(token_hash, now)
        return User.of(account), record


AUTH_KEY = web.AppKey("console_auth", AuthState)


def auth_state(app: web.Application) -> AuthState:
    return app[AUTH_KEY]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def safe_next(value: str | None) -> str | None:
    """A same-site relative path to go back to after sign-in, else None (no open redirect)."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return None
    return value


def _login_url(request: web.Request) -> str:
    if request.method in ("GET", "HEAD"):
        return "/login?" + urlencode({"next": request.rel_url.path_qs})
    return "/login"


def _redirect(location: str, status: int = 302) -> web.Response:
    response = web.Response(status=status, headers={"Location": location})
    response.headers["Cache-Control"] = "no-store"
    return response


def _forbidden(request: web.Request, message: str) -> web.Response:
    if _is_api(request):
        return api_error(403, "forbidden", message)
    return render(request, "forbidden.html", status=403, message=message)


# --- guard ------------------------------------------------------------------------------------------


def require(*roles: str) -> Callable[[Handler], Handler]:
    """Handler decorator: a signed-in user with at least the lowest of ``roles`` (admin ⊇ supervisor ⊇
    operator). No session: pages go to /login?next=…, /api/ answers 401. Wrong role: 403. On /api/ a
    valid bearer token passes (machine clients have full access)."""
    if not roles or any(role not in ROLE_RANK for role in roles):
        raise ValueError(f"require() takes roles among {', '.join(ROLES)}, got {roles!r}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if _is_api(request) and request.get(AUTH_KIND_KEY) == "token":
                return await handler(request)
            user = current_user(request)
            if user is None:
                if _is_api(request):
                    return api_error(401, "unauthorized", "a valid bearer token or a signed-in session is required")
                return _redirect(_login_url(request))
            if not role_allows(user.role, roles):
                log.info("forbidden", path=request.path, user=user.username, role=user.role)
                return _forbidden(request, "Эта страница недоступна для вашей роли.")
            return await handler(request)

        setattr(guarded, REQUIRED_ROLES_ATTR, tuple(roles))
        return guarded

    return decorate


# --- session middleware -----------------------------------------------------------------------------


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs before ivr.web.common.errors_and_auth: loads the session's user; guards unsafe page requests."""
    if request.path.startswith("/static/"):
        return await handler(request)
    state = request.app[AUTH_KEY]
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            found = await state.load(raw)
        except Exception:
            log.exception("session_load_failed", path=request.path)
            if _is_api(request):
                return api_error(503, "store_unavailable", "sessions cannot be read now; try again")
            return web.Response(status=503, text="Сервис временно недоступен, повторите попытку.")
        if found is None:
            request[_CLEAR_COOKIE_KEY] = True
        else:
            user, record = found
            request[USER_KEY] = user
            request[CSRF_KEY] = record.csrf_token
            request[_SESSION_KEY] = record
    if USER_KEY in request and not _is_api(request) and request.path != "/login":
        refused = await _check_page_request(request)
        if refused is not None:
            return refused
    response = await handler(request)
    if request.get(_CLEAR_COOKIE_KEY) and not response.prepared and COOKIE not in response.cookies:
        response.del_cookie(COOKIE, path="/")  # a dead session's cookie: the browser may drop it
    return response


async def _check_page_request(request: web.Request) -> web.Response | None:
    """Pages with a session: unsafe methods (and WebSockets) from our origin only, with the CSRF token.
    (/api/ does the same in errors_and_auth, after the bearer token; /login has its own token.)"""
    unsafe = request.method in UNSAFE_METHODS
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if (unsafe or websocket) and not same_origin(request):
        log.warning("cross_origin_refused", path=request.path, origin=request.headers.get("Origin"))
        return _forbidden(request, "Запрос пришёл с другого сайта.")
    if not unsafe:
        return None
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached by aiohttp: the handler reads the same form
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not csrf_matches(request.get(CSRF_KEY), given):
        log.warning("csrf_refused", path=request.path, user=current_user(request).username)
        return _forbidden(request, "Форма устарела или пришла не с этой страницы. Обновите страницу и повторите.")
    return None


# --- sign-in / sign-out -----------------------------------------------------------------------------


def _set_cookie(response: web.StreamResponse, state: AuthState, name: str, value: str, *, path: str = "/",
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=path, httponly=True, secure=bool(state.deps.cookie_secure),
                        samesite="Lax", max_age=max_age)


def _login_page(request: web.Request, *, status: int = 200, error: str | None = None, username: str = "",
                next_path: str | None = None) -> web.Response:
    state = request.app[AUTH_KEY]
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not _TOKEN.match(token):
        token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, error=error, username=username,
                      next_path=next_path or "", login_token=token)
    _set_cookie(response, state, LOGIN_COOKIE, token, path="/login", max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    next_path = safe_next(request.query.get("next"))
    user = current_user(request)
    if user is not None:
        return _redirect(next_path or HOME[user.role])
    return _login_page(request, next_path=next_path)


def _wait_words(seconds: float) -> str:
    """"7 сек." / "3 мин." (abbreviations: no agreement of the noun with the number needed)."""
    whole = max(1, math.ceil(seconds))
    return f"{whole} сек." if whole < 60 else f"{math.ceil(whole / 60)} мин."


_THROTTLED = {
    "account": "Слишком много неверных паролей для этого имени. Повторите вход через {wait}",
    "address": "Слишком много неудачных попыток входа с этого адреса. Повторите вход через {wait}",
}


def _throttled(request: web.Request, refusal: Refusal, *, username: str, ip: str,
               next_path: str | None) -> web.Response:
    """429: the person reads how long to wait; the client gets Retry-After; the log one line."""
    log.warning("login_throttled", scope=refusal.scope, ip=ip, username=normalize_username(username)[:64],
                retry_after=refusal.retry_after)
    response = _login_page(request, status=429, username=username, next_path=next_path,
                           error=_THROTTLED[refusal.scope].format(wait=_wait_words(refusal.wait)))
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    state = request.app[AUTH_KEY]
    form = await request.post()
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")) or None)
    if not same_origin(request):
        log.warning("cross_origin_refused", path=request.path, origin=request.headers.get("Origin"))
        return _forbidden(request, "Запрос пришёл с другого сайта.")
    if not csrf_matches(request.cookies.get(LOGIN_COOKIE), str(form.get("csrf_token", ""))):
        return _login_page(request, status=403, username=username, next_path=next_path,
                           error="Форма устарела. Введите имя и пароль ещё раз.")
    ip = client_address(request)
    account_key = normalize_username(username)[:64]
    now = state.clock()
    refusal = state.throttle.before(account_key, ip, now.timestamp())
    if refusal is not None:
        return _throttled(request, refusal, username=username, ip=ip, next_path=next_path)
    account = await state.accounts.authenticate(username, password)
    if account is None:
        refusal = state.throttle.after_failure(account_key, ip, now.timestamp())
        if refusal is not None:
            return _throttled(request, refusal, username=username, ip=ip, next_path=next_path)
        log.info("login_failed", ip=ip, username=account_key)
        error = "Неверное имя пользователя или пароль."
        wait = state.throttle.next_wait(account_key, now.timestamp())
        if wait > 0:
            error += f" Следующая попытка — через {_wait_words(wait)}"
        return _login_page(request, status=401, username=username, next_path=next_path, error=error)
    state.throttle.succeeded(account_key)
    old = request.cookies.get(COOKIE)
    if old and _TOKEN.match(old):
        await state.accounts.delete_session(_hash(old))  # never promote a cookie from before sign-in
    token = secrets.token_urlsafe(32)
    await state.accounts.create_session(
        account.id, token_hash=_hash(token), csrf_token=secrets.token_urlsafe(32), now=now,
        expires_at=now + ABSOLUTE_LIFETIME, ip=ip, user_agent=request.headers.get("User-Agent"),
    )
    await state.accounts.purge_sessions(now=now, idle=state.idle_lifetime)
    log.info("login_succeeded", user_id=account.id, username=account.username, role=account.role, ip=ip)
    response = _redirect(next_path or HOME[account.role], status=303)
    _set_cookie(response, state, COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST only (a link or an image cannot sign anyone out); the session middleware checked the CSRF token."""
    state = request.app[AUTH_KEY]
    raw = request.cookies.get(COOKIE)
    user = current_user(request)
    if raw and _TOKEN.match(raw):
        await state.accounts.delete_session(_hash(raw))
    if user is not None:
        log.info("logout", user_id=user.user_id, username=user.username)
    response = _redirect("/login", status=303)
    response.del_cookie(COOKIE, path="/")
    return response


async def home(request: web.Request) -> web.Response:
    user = current_user(request)
    return _redirect("/login" if user is None else HOME[user.role])


async def me(request: web.Request) -> web.Response:
    """GET /api/v1/me: who is signed in and the session's CSRF token (for scripts); null with a bearer token."""
    user = current_user(request)
    if user is None:
        return to_json({"user": None, "csrf_token": None})
    return to_json({"user": user, "csrf_token": csrf_token(request)})


# --- user administration ----------------------------------------------------------------------------

_DONE = {
    "created": "Пользователь создан.",
    "role": "Роль изменена.",
    "profile": "Данные пользователя сохранены.",
    "deactivated": "Пользователь отключён, его сеансы завершены.",
    "activated": "Пользователь снова может входить.",
    "password": "Пароль сменён, сеансы пользователя завершены.",
}

_ERRORS = {
    "the password must have at least": "Пароль должен быть не короче 8 символов.",
    "the password must have at most": "Пароль слишком длинный.",
    "the username must be": "Имя пользователя: от 1 до 64 букв, цифр или символов . _ @ -.",
    "unknown role": "Неизвестная роль.",
    "bad queue member interface": "Интерфейс оператора должен выглядеть как PJSIP/101.",
    "already exists": "Пользователь с таким именем уже есть.",
}


def _error_text(exc: AccountError) -> str:
    text = str(exc)
    for needle, russian in _ERRORS.items():
        if needle in text:
            return russian
    return "Не удалось сохранить изменения."


async def _users_page(request: web.Request, *, status: int = 200, error: str | None = None,
                      form: dict[str, str] | None = None) -> web.Response:
    users = await request.app[AUTH_KEY].accounts.list_users()
    done = _DONE.get(request.query.get("done", ""))
    return render(request, "users.html", status=status, users=users, roles=ROLES, role_names=ROLE_NAMES,
                  message=done, error=error, form=form or {"username": "", "display_name": "", "role": "operator",
                                                           "operator_interface": ""})


@require("admin")
async def users_list(request: web.Request) -> web.Response:
    return await _users_page(request)


@require("admin")
async def users_create(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {name: str(form.get(name, "")).strip() for name in ("username", "display_name", "role",
                                                                 "operator_interface")}
    try:
        account = await request.app[AUTH_KEY].accounts.create_user(
            fields["username"], str(form.get("password", "")), fields["role"], fields["display_name"],
            fields["operator_interface"] or None,
        )
    except AccountError as exc:
        return await _users_page(request, status=422, error=_error_text(exc), form=fields)
    log.info("admin_user_created", by=current_user(request).username, user_id=account.id, role=account.role)
    return _redirect("/admin/users?done=created", status=303)


async def _target(request: web.Request) -> Account | None:
    try:
        user_id = int(request.match_info["user_id"])
    except ValueError:
        return None
    return await request.app[AUTH_KEY].accounts.get_user(user_id)


@require("admin")
async def users_role(request: web.Request) -> web.Response:
    target = await _target(request)
    if target is None:
        return await _users_page(request, status=404, error="Нет такого пользователя.")
    if target.id == current_user(request).user_id:
        return await _users_page(request, status=422, error="Свою роль изменить нельзя.")
    role = str((await request.post()).get("role", ""))
    try:
        await request.app[AUTH_KEY].accounts.update_user(target.id, role=role)
    except AccountError as exc:
        return await _users_page(request, status=422, error=_error_text(exc))
    log.info("admin_role_changed", by=current_user(request).username, user_id=target.id, role=role)
    return _redirect("/admin/users?done=role", status=303)


@require("admin")
async def users_profile(request: web.Request) -> web.Response:
    target = await _target(request)
    if target is None:
        return await _users_page(request, status=404, error="Нет такого пользователя.")
    form = await request.post()
    try:
        await request.app[AUTH_KEY].accounts.update_user(
            target.id, display_name=str(form.get("display_name", "")),
            operator_interface=str(form.get("operator_interface", "")) or None,
        )
    except AccountError as exc:
        return await _users_page(request, status=422, error=_error_text(exc))
    return _redirect("/admin/users?done=profile", status=303)


@require("admin")
async def users_active(request: web.Request) -> web.Response:
    target = await _target(request)
    if target is None:
        return await _users_page(request, status=404, error="Нет такого пользователя.")
    if target.id == current_user(request).user_id:
        return await _users_page(request, status=422, error="Свою учётную запись отключить нельзя.")
    active = str((await request.post()).get("active", "")) == "1"
    await request.app[AUTH_KEY].accounts.update_user(target.id, active=active)
    log.info("admin_user_active", by=current_user(request).username, user_id=target.id, active=active)
    return _redirect(f"/admin/users?done={'activated' if active else 'deactivated'}", status=303)


@require("admin")
async def users_password(request: web.Request) -> web.Response:
    target = await _target(request)
    if target is None:
        return await _users_page(request, status=404, error="Нет такого пользователя.")
    try:
        await request.app[AUTH_KEY].accounts.set_password(target.id, str((await request.post()).get("password", "")))
    except AccountError as exc:
        return await _users_page(request, status=422, error=_error_text(exc))
    log.info("admin_password_reset", by=current_user(request).username, user_id=target.id)
    if target.id == current_user(request).user_id:
        return _redirect("/login", status=303)  # own sessions ended with the reset
    return _redirect("/admin/users?done=password", status=303)


# --- wiring -----------------------------------------------------------------------------------------


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app[AUTH_KEY] = AuthState(accounts=AccountStore(deps.store.sessions), deps=deps)
    # Outermost: the user is known before errors_and_auth decides about /api/.
    app.middlewares.insert(0, session_middleware)
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/v1/me", me)
    app.router.add_get("/admin/users", users_list)
    app.router.add_post("/admin/users", users_create)
    app.router.add_post("/admin/users/{user_id}/role", users_role)
    app.router.add_post("/admin/users/{user_id}/profile", users_profile)
    app.router.add_post("/admin/users/{user_id}/active", users_active)
    app.router.add_post("/admin/users/{user_id}/password", users_password)
