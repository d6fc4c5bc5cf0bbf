"""`ivr serve | call | import | demo-data | db upgrade | prompts build | users add|list|passwd | crm deliver |
sync bitrix24|amocrm`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from ivr import event_loop
from ivr.settings import Settings, SettingsError, load_settings


class _VoiceAnswer(argparse.Action):
    """--say and --say-wav into one ordered list: [("say", "да"), ("wav", "answer.wav"), …]."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        kind = "wav" if option_string == "--say-wav" else "say"
        getattr(namespace, self.dest).append((kind, values))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Repeat-order phone robot beside Asterisk")
    parser.add_argument(
        "--config", type=Path, help="your config file, over the shipped defaults (see config/ivr.example.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the FastAGI server and the web API")
    serve.add_argument("--demo", action="store_true", help="load the demo data set first (idempotent)")
    serve.add_argument(
        "--workers", type=int, default=1,
        help="worker processes sharing the ports (PostgreSQL only; default 1: one process, no supervisor)",
    )
    # Set by the supervisor only: this process is a worker; it writes one byte to the fd once serving.
    serve.add_argument("--worker-ready-fd", type=int, help=argparse.SUPPRESS)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])

    imp = sub.add_parser("import", help="load customers, products or orders from CSV/XLSX")
    imp.add_argument("kind", choices=["customers", "products", "orders"])
    imp.add_argument("files", nargs="+", type=Path)

    sub.add_parser("demo-data", help="load a small realistic demo data set (idempotent)")

    prompts = sub.add_parser("prompts", help="synthesized prompts")
    prompts.add_argument("action", choices=["build"])

    call = sub.add_parser("call", help="place a call to the running server, exactly as Asterisk would")
    call.add_argument("number", help="caller id, e.g. +79161234567 (empty string: withheld)")
    call.add_argument(
        "--keys", default="", help="answers to the questions, comma-separated, e.g. '2,6#,#,1' (default: none)"
    )
    call.add_argument("--host", help="FastAGI host (default: agi.host)")
    call.add_argument("--port", type=int, help="FastAGI port (default: agi.port)")
    call.add_argument("--script", default="repeat-order", help="script name, may carry options: repeat-order?lang=en")
    call.add_argument("--play", action="store_true", help="play each prompt if aplay/play is installed")
    call.add_argument(
        "--say", dest="voice", action=_VoiceAnswer, default=[], metavar="PHRASE",
        help="a spoken answer to the next question asked over AudioSocket (espeak-ng); repeat for the next ones",
    )
    call.add_argument(
        "--say-wav", dest="voice", action=_VoiceAnswer, default=[], metavar="FILE",
        help="a WAV file (any rate) as the spoken answer to the next AudioSocket question; mixes with --say in order",
    )
    call.add_argument(
        "--speech", choices=["on", "off", "line"], default=None,
        help="the line's IVR_SPEECH (default: on with --say/--say-wav, else the service's speech.enabled)",
    )

    crm = sub.add_parser("crm", help="the CRM bridge")
    crm.add_argument("action", choices=["deliver"],
                     help="deliver: run only the outbox's delivery worker (beside `serve` with crm.deliver=false)")

    sync = sub.add_parser("sync", help="pull contacts, products and deals from a CRM into the store, once")
    sync.add_argument("source", choices=["bitrix24", "amocrm"],
                      help="bitrix24: [crm_bitrix24] webhook_url; amocrm: [crm_amocrm] base_url and token")
    sync.add_argument("--full", action="store_true",
                      help="read everything again instead of what changed since the last run (changes nothing "
                           "that is already right)")

    users = sub.add_parser("users", help="console users (operators, supervisors, admins)")
    users_sub = users.add_subparsers(dest="action", required=True)
    users_add = users_sub.add_parser("add", help="create a user; the password is read from stdin or a prompt")
    users_add.add_argument("username")
    users_add.add_argument("--role", required=True, help="operator | supervisor | admin")
    users_add.add_argument("--name", default="", help="name shown in the console")
    users_add.add_argument("--interface", help="the operator's queue member interface, e.g. PJSIP/101")
    users_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    users_sub.add_parser("list", help="list the users")
    users_passwd = users_sub.add_parser("passwd", help="set a new password (ends the user's sessions)")
    users_passwd.add_argument("username")
    users_passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
    except SettingsError as exc:
        print(f"ivr: configuration error: {exc}", file=sys.stderr)
        return 2
    from ivr.logs import configure_logging

    configure_logging(settings.log.level, settings.log.json)
    command = {
        "serve": _serve,
        "db": _db,
        "import": _import,
        "demo-data": _demo,
        "prompts": _prompts,
        "call": _call,
        "users": _users,
        "crm": _crm,
        "sync": _sync,
    }[args.command]
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return event_loop.run(command(settings, args), settings.agi.event_loop)
    except KeyboardInterrupt:
        return 130
    except (OSError, SQLAlchemyError) as exc:  # database down, port taken…: one line, not a traceback
        line = _one_line(exc)
        if isinstance(exc, (ConnectionError, SQLAlchemyError)):
            # Not every loop names the address in a refused connect (uvloop does not): we do.
            from ivr.app import safe_url

            line += f" (database {safe_url(settings.database.url)})"
        print(f"ivr {args.command}: {line}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    from ivr.app import StartupError

    # A StartupError names the part and the address already ("web console: cannot listen on …").
    return str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"


async def _crm(settings: Settings, args: argparse.Namespace) -> int:
    from ivr.app import deliver_forever

    await deliver_forever(settings)
    return 0


async def _sync(settings: Settings, args: argparse.Namespace) -> int:
    """One run; the counts on stdout, what could not be mapped and why the run stopped on stderr."""
    from crm_bridge.db import upgrade
    from ivr.app import sync_once

    await upgrade(settings.database.url)
    report = await sync_once(settings, args.source, full=args.full)
    for issue in report.issues:
        print(issue, file=sys.stderr)
    lines = report.summary()
    for line in lines[:len(report.counts)]:
        print(line)
    for line in lines[len(report.counts):]:  # why the run stopped: one line, scrubbed of the CRM's secrets
        print(f"ivr sync: {line}", file=sys.stderr)
    if report.resumed:
        print(f"{args.source}: continued the stopped run of {', '.join(report.resumed)}")
    return 0 if report.ok else 1


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from ivr.cluster import is_postgres

    if args.worker_ready_fd is not None:  # the supervisor migrated (and loaded the demo data) already
        from ivr.app import serve_forever
        from ivr.cluster.supervisor import report_ready

        await serve_forever(settings, migrate=False, on_started=lambda: report_ready(args.worker_ready_fd))
        return 0
    if args.workers < 1:
        print("ivr serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and not is_postgres(settings.database.url):
        print(
            "ivr serve: --workers > 1 needs PostgreSQL (database.url postgresql+asyncpg://…); "
            "SQLite is the single-process embedded store",
            file=sys.stderr,
        )
        return 2
    from ivr.app import serve_forever  # after the checks: it loads the whole service

    if args.demo:
        await _demo(settings, args)
        # The demo is watched with `ivr call`, which prints the robot's words from the prompts' text
        # sidecars; workers started by the supervisor read the same switch from the environment.
        settings = settings.replace(prompts={"text_sidecars": True})
        os.environ["IVR_PROMPTS__TEXT_SIDECARS"] = "true"
    from ivr.database_gate import may_come_back, one_line

    late_check = None
    try:
        refused = await _exposure_refusal(settings)
    except Exception as exc:
        if args.workers > 1 or not may_come_back(exc):
            raise
        # The database is not there yet: serve hands calls to operators and retries it (README
        # "Health"); the demo-password check runs as soon as it answers, and stops serve if it fails.
        print(f"ivr serve: database unreachable ({one_line(exc)}); the demo-password check runs when it answers",
              file=sys.stderr)
        from ivr.exposure import refusal

        refused, late_check = refusal(settings, []), lambda: _exposure_refusal(settings)  # the token: now
    if refused is not None:
        print(refused, file=sys.stderr)
        return 2
    if args.workers == 1:
        refused = await serve_forever(settings, once_database_ready=late_check)
        if refused is not None:
            print(refused, file=sys.stderr)
            return 2
        return 0
    from crm_bridge.db import upgrade
    from ivr.cluster.supervisor import Supervisor, worker_command

    await upgrade(settings.database.url)
    return await Supervisor(args.workers, worker_command(str(args.config) if args.config else None)).run()


async def _exposure_refusal(settings: Settings) -> str | None:
    """ivr.exposure: the line to refuse with when a listener is beyond loopback with a default secret."""
    from ivr.exposure import exposed_listeners, refusal

    if not exposed_listeners(settings):
        return None  # on loopback: nothing to check (and no database to open for it)
    from crm_bridge.db import session_factory, upgrade
    from crm_bridge.demo import demo_passwords_in_use
    from ivr.app import build_store

    await upgrade(settings.database.url)  # serve would migrate anyway; the users table must exist
    engine, _store = build_store(settings)
    try:
        demo_accounts = await demo_passwords_in_use(session_factory(engine))
    finally:
        await engine.dispose()
    return refusal(settings, demo_accounts)


async def _db(settings: Settings, args: argparse.Namespace) -> int:
    from crm_bridge.db import upgrade

    await upgrade(settings.database.url)
    print("database schema is up to date")
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from crm_bridge.db import upgrade
    from crm_bridge.importers import ImportFileError, import_file
    from ivr.app import build_store

    await upgrade(settings.database.url)
    engine, store = build_store(settings)
    failed = False
    try:
        for path in args.files:
            try:
                report = await import_file(store, args.kind, path)
            except ImportFileError as exc:
                print(f"ivr: {exc}", file=sys.stderr)  # the message starts with the path already
                failed = True
                continue
            for error in report.errors:
                print(f"{error.file}:{error.line}: {error.reason}", file=sys.stderr)
            print(
                f"{path}: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
                f"{len(report.errors)} rejected"
            )
            failed = failed or not report.ok
    finally:
        await engine.dispose()
    return 1 if failed else 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from crm_bridge.db import session_factory, upgrade
    from crm_bridge.demo import DEMO_PASSWORD, create_demo_users, load_demo_data
    from ivr.app import build_store

    await upgrade(settings.database.url)
    engine, _store = build_store(settings)
    try:
        report = await load_demo_data(session_factory(engine))
        demo_users = await create_demo_users(session_factory(engine))
    finally:
        await engine.dispose()
    print(f"demo data: {report.created} created, {report.updated} updated, {report.unchanged} unchanged")
    if demo_users:
        print(f"demo console accounts (password {DEMO_PASSWORD!r}; replace them before real use): "
              + ", ".join(demo_users))
    return 0 if report.ok else 1


async def _prompts(settings: Settings, args: argparse.Namespace) -> int:
    from ivr.app import build_prompt_cache, build_store, catalogue_products
    from ivr.speech.warmup import warm_prompts

    engine, store = build_store(settings)
    try:
        products = await catalogue_products(store)
    finally:
        await engine.dispose()
    cache = build_prompt_cache(settings)
    report = await warm_prompts(cache, products=products, max_quantity=settings.flow.max_quantity,
                                default_language=settings.flow.default_language)
    print(f"{report.static_ready} static prompts ready in {settings.prompts.dir} "
          f"({report.static_synthesized} synthesized)")
    print(f"{len(report.named)} named prompts for the dialplan in {cache.directory / 'named'}")
    print(f"{report.units} segment units ready in {cache.directory / 'segments'} "
          f"({report.units_synthesized} synthesized)")
    swept = await asyncio.to_thread(cache.sweep)
    if swept.files_removed:
        print(f"evicted {swept.files_removed} files ({swept.bytes_removed} bytes) beyond prompts.cache_max_mb")
    return 0


async def _call(settings: Settings, args: argparse.Namespace) -> int:
    from ivr.agi.softphone import place_call, spoken_answers

    language = "en" if "lang=en" in args.script else settings.flow.default_language
    try:
        voice = await spoken_answers(list(args.voice), language)
    except (OSError, ValueError) as exc:  # espeak-ng missing, a WAV that is not one
        print(f"ivr call: cannot make the spoken answers: {exc}", file=sys.stderr)
        return 2
    speech = args.speech or ("on" if voice else "line")
    # What the dialplan passes: AGI(…/repeat-order,speech=${IVR_SPEECH}).
    line = {"on": "speech=1", "off": "speech=0", "line": "speech="}[speech]
    result = await place_call(
        host=args.host or settings.agi.host,
        port=args.port or settings.agi.port,
        script=args.script,
        caller_id=args.number,
        answers=[a for a in args.keys.split(",")] if args.keys else [],
        voice=voice,
        args=(line,),
        play=args.play,
        out=sys.stdout,
    )
    return 0 if result.completed else 1


def _read_password(args: argparse.Namespace) -> str | None:
    """From the first stdin line (--password-stdin) or an interactive prompt typed twice; never argv."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat the password: ") != first:
        print("ivr users: the passwords do not match", file=sys.stderr)
        return None
    return first


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    from crm_bridge.accounts import ROLES, AccountError, AccountStore
    from crm_bridge.db import upgrade
    from ivr.app import build_store

    if args.action == "add" and args.role not in ROLES:
        print(f"ivr users: unknown role {args.role!r}: use one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    password = _read_password(args) if args.action in ("add", "passwd") else None
    if args.action in ("add", "passwd") and password is None:
        return 2
    await upgrade(settings.database.url)
    engine, store = build_store(settings)
    accounts = AccountStore(store.sessions)
    try:
        if args.action == "list":
            for user in await accounts.list_users():
                state = "active" if user.active else "inactive"
                print(f"{user.username}\t{user.role}\t{state}\t{user.operator_interface or '-'}\t{user.display_name}")
            return 0
        if args.action == "passwd":
            account = await accounts.get_user_by_username(args.username)
            if account is None:
                print(f"ivr users: no user {args.username!r}", file=sys.stderr)
                return 1
            await accounts.set_password(account.id, password)
            print(f"password of {account.username} changed; their sessions ended")
            return 0
        account = await accounts.create_user(args.username, password, args.role, args.name, args.interface)
        print(f"user {account.username} created ({account.role})")
        return 0
    except AccountError as exc:
        print(f"ivr users: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
