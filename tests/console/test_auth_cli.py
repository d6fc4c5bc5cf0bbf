"""`ivr users add | list | passwd` through the real entry point, on a tmp SQLite file."""

from __future__ import annotations

import asyncio
import io
import sys

from argon2 import PasswordHasher

from crm_bridge.accounts import AccountStore
from ivr.app import build_store
from ivr.settings import load_settings
from tests.cli import conftest as cli_fixtures

# The CLI folder's fixtures, registered here under their own names: ivr_env (a tmp database, no
# IVR_ settings of the shell) and the autouse logging restore.
ivr_env = cli_fixtures.ivr_env
_restore_logging = cli_fixtures._restore_logging


def stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def accounts_call(method: str, *args):
    async def run():
        engine, store = build_store(load_settings())
        try:
            return await getattr(AccountStore(store.sessions), method)(*args)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_users_add_reads_the_password_from_stdin(ivr_env, monkeypatch):
    stdin(monkeypatch, "Pa55word!\n")
    run = ivr_env.run("users", "add", "Anna", "--role", "operator", "--name", "Анна Петрова",
                      "--interface", "PJSIP/101", "--password-stdin")
    assert run.code == 0, run.err
    assert "user anna created (operator)" in run.out
    assert "Pa55word!" not in run.out + run.err
    account = accounts_call("authenticate", "anna", "Pa55word!")
    assert account is not None
    assert (account.role, account.display_name, account.operator_interface) == ("operator", "Анна Петрова",
                                                                                 "PJSIP/101")
    listed = ivr_env.run("users", "list")
    assert listed.code == 0
    assert listed.out.split("\n")[0].split("\t") == ["anna", "operator", "active", "PJSIP/101", "Анна Петрова"]


def test_users_add_prompts_twice_without_stdin(ivr_env, monkeypatch):
    answers = iter(["Secret-pass-1", "Secret-pass-1"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    run = ivr_env.run("users", "add", "boss", "--role", "admin")
    assert run.code == 0, run.err
    assert accounts_call("authenticate", "boss", "Secret-pass-1") is not None

    mismatch = iter(["Secret-pass-1", "Secret-pass-2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(mismatch))
    run = ivr_env.run("users", "add", "boss2", "--role", "admin")
    assert run.code == 2 and "do not match" in run.err


def test_users_add_refuses_duplicates_bad_roles_and_short_passwords(ivr_env, monkeypatch):
    stdin(monkeypatch, "Pa55word!\n")
    assert ivr_env.run("users", "add", "sup", "--role", "supervisor", "--password-stdin").code == 0
    stdin(monkeypatch, "Other-pass-1\n")
    duplicate = ivr_env.run("users", "add", "SUP", "--role", "supervisor", "--password-stdin")
    assert duplicate.code == 1
    assert "already exists" in duplicate.err
    stdin(monkeypatch, "Pa55word!\n")
    bad_role = ivr_env.run("users", "add", "x", "--role", "root", "--password-stdin")
    assert bad_role.code == 2
    assert "unknown role 'root'" in bad_role.err and "operator, supervisor, admin" in bad_role.err
    stdin(monkeypatch, "short\n")
    short = ivr_env.run("users", "add", "y", "--role", "operator", "--password-stdin")
    assert short.code == 1 and "at least 8" in short.err
    stdin(monkeypatch, "Pa55word!\n")
    bad_interface = ivr_env.run("users", "add", "z", "--role", "operator", "--interface", "101 1",
                                "--password-stdin")
    assert bad_interface.code == 1 and "PJSIP/101" in bad_interface.err
    assert [u.username for u in accounts_call("list_users")] == ["sup"]


def test_users_passwd(ivr_env, monkeypatch):
    stdin(monkeypatch, "Pa55word!\n")
    assert ivr_env.run("users", "add", "op", "--role", "operator", "--password-stdin").code == 0
    stdin(monkeypatch, "Brand-new-1\n")
    run = ivr_env.run("users", "passwd", "op", "--password-stdin")
    assert run.code == 0, run.err
    assert accounts_call("authenticate", "op", "Pa55word!") is None
    assert accounts_call("authenticate", "op", "Brand-new-1") is not None
    stdin(monkeypatch, "Brand-new-1\n")
    assert ivr_env.run("users", "passwd", "nobody", "--password-stdin").code == 1


def test_the_cli_hashes_with_argon2_defaults(ivr_env, monkeypatch):
    stdin(monkeypatch, "Pa55word!\n")
    assert ivr_env.run("users", "add", "op", "--role", "operator", "--password-stdin").code == 0
    import sqlite3

    with sqlite3.connect(ivr_env.db_path) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(stored)
