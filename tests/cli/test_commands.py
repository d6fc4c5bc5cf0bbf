"""`ivr db upgrade | import | demo-data | prompts build` through the real entry point, on a tmp SQLite file."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import wave

import pytest

from ivr.app import build_store
from ivr.settings import load_settings
from ivr.speech.warmup import LANGUAGES
from tests.dialplans.sounds import missing_sounds

CUSTOMERS_HEADER = "customer_id,last_name,first_name,patronymic,phones,address,language\n"


def query(db_path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def customer_card(customer_id: str):
    async def read():
        engine, store = build_store(load_settings())
        try:
            return await store.get_customer_card(customer_id)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_db_upgrade_creates_the_schema_and_is_repeatable(ivr_env):
    assert not ivr_env.db_path.exists()
    first = ivr_env.run("db", "upgrade")
    assert first.code == 0, first.err
    assert "database schema is up to date" in first.out
    tables = {name for (name,) in query(ivr_env.db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    expected = {"customers", "phones", "products", "orders", "order_lines", "invoices", "calls", "timeline_events"}
    assert expected <= tables
    revision = query(ivr_env.db_path, "SELECT version_num FROM alembic_version")
    assert len(revision) == 1

    second = ivr_env.run("db", "upgrade")
    assert second.code == 0, second.err
    assert "database schema is up to date" in second.out
    assert query(ivr_env.db_path, "SELECT version_num FROM alembic_version") == revision


def test_import_good_customers(ivr_env):
    csv = ivr_env.root / "customers.csv"
    csv.write_text(
        CUSTOMERS_HEADER
        + "K001,Орлов,Пётр,Ильич,8 (916) 000-00-01,\"Москва, ул. Тверская, 1\",ru\n"
        + "K002,Brown,Ann,,+7 926 000 00 02; 84950000003,\"Moscow, Arbat 2\",en\n",
        encoding="utf-8",
    )
    result = ivr_env.run("import", "customers", str(csv))
    assert result.code == 0, result.err
    assert f"{csv}: 2 created, 0 updated, 0 unchanged, 0 rejected" in result.out
    card = customer_card("K002")
    assert (card.customer.first_name, card.customer.language) == ("Ann", "en")
    assert sorted(card.customer.phones) == ["+74950000003", "+79260000002"]
    assert customer_card("K001").customer.phones == ("+79160000001",)

    again = ivr_env.run("import", "customers", str(csv))
    assert again.code == 0
    assert f"{csv}: 0 created, 0 updated, 2 unchanged, 0 rejected" in again.out


def test_import_with_a_bad_row_reports_it_and_loads_the_rest(ivr_env):
    csv = ivr_env.root / "clients.csv"
    csv.write_text(
        CUSTOMERS_HEADER
        + "K001,Орлов,Пётр,Ильич,+79160000001,Москва,ru\n"
        + "K002,Сидоров,Иван,Петрович,12,Москва,ru\n"
        + "K003,Белова,Нина,Юрьевна,+79160000003,Москва,ru\n",
        encoding="utf-8",
    )
    result = ivr_env.run("import", "customers", str(csv))
    assert result.code == 1
    bad_lines = [line for line in result.err.splitlines() if line.startswith(f"{csv}:")]
    assert len(bad_lines) == 1
    assert bad_lines[0].startswith(f"{csv}:3: ")  # the header is line 1
    assert "12" in bad_lines[0]
    assert "Traceback" not in result.err
    assert f"{csv}: 2 created, 0 updated, 0 unchanged, 1 rejected" in result.out
    assert customer_card("K001") is not None and customer_card("K003") is not None
    assert customer_card("K002") is None


def test_import_of_a_missing_file_fails_clearly(ivr_env):
    missing = ivr_env.root / "nowhere.csv"
    result = ivr_env.run("import", "customers", str(missing))
    assert result.code != 0
    assert f"{missing}: no such file" in result.err
    assert f"{missing}: {missing}" not in result.err  # the path is said once
    assert "Traceback" not in result.err + result.out


def test_import_of_a_wrong_format_fails_clearly(ivr_env):
    json_file = ivr_env.root / "customers.json"
    json_file.write_text('{"customer_id": "K1"}', encoding="utf-8")
    fake_xlsx = ivr_env.root / "customers.xlsx"
    fake_xlsx.write_bytes(b"PK\x03\x04 this is not a workbook")
    no_columns = ivr_env.root / "customers.csv"
    no_columns.write_text("name;phone\nОрлов;+79160000001\n", encoding="utf-8")

    result = ivr_env.run("import", "customers", str(json_file), str(fake_xlsx), str(no_columns))
    assert result.code != 0
    assert f"{json_file}: not a CSV or XLSX file" in result.err
    assert f"{fake_xlsx}: not a readable XLSX workbook" in result.err
    assert f"{no_columns}:1: missing column" in result.err
    assert "Traceback" not in result.err + result.out
    assert query(ivr_env.db_path, "SELECT count(*) FROM customers") == [(0,)]


def test_import_of_an_unknown_kind_is_a_usage_error(ivr_env):
    with pytest.raises(SystemExit) as info:
        ivr_env.run("import", "invoices", "x.csv")
    assert info.value.code == 2
    assert "invalid choice: 'invoices'" in ivr_env.capsys.readouterr().err


def test_configuration_error_exits_2_with_the_key(ivr_env, monkeypatch):
    monkeypatch.setenv("IVR_AGI__PORT", "forty")
    result = ivr_env.run("db", "upgrade")
    assert result.code == 2
    assert "configuration error" in result.err and "agi.port" in result.err
    assert not ivr_env.db_path.exists()


def test_demo_data_twice_changes_nothing_the_second_time(ivr_env):
    first = ivr_env.run("demo-data")
    assert first.code == 0, first.err
    # 5 products + 8 customers + 9 orders (12 order lines)
    assert "demo data: 22 created, 0 updated, 0 unchanged" in first.out
    snapshot = query(ivr_env.db_path, "SELECT order_id, customer_id, total FROM orders ORDER BY order_id")
    assert len(snapshot) == 9
    assert customer_card("C001").customer.first_name == "Алексей"

    second = ivr_env.run("demo-data")
    assert second.code == 0, second.err
    assert "demo data: 0 created, 0 updated, 22 unchanged" in second.out
    assert query(ivr_env.db_path, "SELECT order_id, customer_id, total FROM orders ORDER BY order_id") == snapshot
    assert query(ivr_env.db_path, "SELECT count(*) FROM customers") == [(8,)]


def test_prompts_build_synthesizes_8khz_wavs_once(ivr_env):
    first = ivr_env.run("prompts", "build")
    assert first.code == 0, first.err
    wavs = sorted(ivr_env.prompts_dir.glob("*.wav"))
    assert len(wavs) >= 8  # both languages, every static prompt
    for wav in wavs:
        with wave.open(str(wav)) as audio:
            assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
            assert audio.getnframes() > 800  # more than a tenth of a second of speech
        assert wav.with_suffix(".txt").read_text(encoding="utf-8").strip()
    texts = {w.with_suffix(".txt").read_text(encoding="utf-8") for w in wavs}
    assert any("оператор" in t for t in texts) and any("operator" in t for t in texts)
    assert f"{len(wavs)} static prompts ready in {ivr_env.prompts_dir} ({len(wavs)} synthesized)" in first.out

    units = sorted((ivr_env.prompts_dir / "segments").glob("*.wav"))
    assert len(units) > 500  # numbers, dates, hours, literals, demo products in ru and en
    assert f"{len(units)} segment units ready in {ivr_env.prompts_dir / 'segments'} ({len(units)} synthesized)" \
        in first.out
    assert not list((ivr_env.prompts_dir / "segments").glob("*.txt"))  # units carry no text beside them
    # Every sound dialplans/*.conf names, in every language, where Asterisk looks for it.
    assert missing_sounds(ivr_env.prompts_dir, LANGUAGES) == []
    assert f"3 named prompts for the dialplan in {ivr_env.prompts_dir / 'named'}" in first.out

    # A rewrite would be a new inode (files appear by rename); a cache hit only touches the mtime (LRU).
    inodes = {w: w.stat().st_ino for w in [*wavs, *units]}
    second = ivr_env.run("prompts", "build")
    assert second.code == 0, second.err
    assert f"{len(wavs)} static prompts ready in {ivr_env.prompts_dir} (0 synthesized)" in second.out
    assert f"{len(units)} segment units ready in {ivr_env.prompts_dir / 'segments'} (0 synthesized)" in second.out
    assert sorted(ivr_env.prompts_dir.glob("*.wav")) == wavs
    assert {w: w.stat().st_ino for w in [*wavs, *units]} == inodes


def test_a_config_file_named_on_the_command_line_must_exist(ivr_env):
    missing = ivr_env.root / "typo.toml"
    result = ivr_env.run("--config", str(missing), "db", "upgrade")
    assert result.code == 2
    assert "configuration error" in result.err and str(missing) in result.err
    assert not ivr_env.db_path.exists()


def test_a_config_file_named_on_the_command_line_is_used(ivr_env, monkeypatch):
    other_db = ivr_env.root / "other.sqlite3"
    config = ivr_env.root / "ivr.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{other_db}"\n', encoding="utf-8")
    monkeypatch.delenv("IVR_DATABASE__URL")
    result = ivr_env.run("--config", str(config), "db", "upgrade")
    assert result.code == 0, result.err
    assert other_db.exists() and not ivr_env.db_path.exists()


def test_an_unreachable_database_is_one_clear_line(ivr_env, monkeypatch):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("IVR_DATABASE__URL", f"postgresql+asyncpg://ivr@127.0.0.1:{port}/ivr")
    for argv in (("db", "upgrade"), ("demo-data",)):
        result = ivr_env.run(*argv)
        assert result.code == 1
        assert f"ivr {argv[0]}: " in result.err
        assert str(port) in result.err
        assert "Traceback" not in result.err
