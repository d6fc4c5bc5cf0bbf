"""Layered settings: ivr/defaults.toml (package data) < config file < local file < IVR_SECTION__KEY environment."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import get_type_hints

import pytest

from ivr.settings import Settings, SettingsError, default_settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "ivr" / "defaults.toml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_defaults_are_the_settings_without_any_file():
    shipped = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    settings = load_settings(environ={})
    assert settings == default_settings()
    assert settings.agi.port == shipped["agi"]["port"] == 4573
    assert settings.database.url == shipped["database"]["url"]
    assert settings.web.api_token == "change-me"
    assert settings.orders.vat_rates == ((date(2019, 1, 1), Decimal("20")), (date(2026, 1, 1), Decimal("22")))
    assert all(isinstance(rate, Decimal) for _, rate in settings.orders.vat_rates)
    assert settings.delivery.cutoff == time(14, 0)
    assert settings.delivery.days == (1, 2, 3, 4, 5, 6)
    assert settings.delivery.holidays == tuple(date.fromisoformat(d) for d in shipped["delivery"]["holidays"])
    assert date(2027, 1, 1) in settings.delivery.holidays and date(2027, 1, 1) in settings.hours.holidays


def test_the_shipped_defaults_name_every_setting_and_nothing_else():
    """One place for defaults: the dataclasses declare types only, the file gives every value."""
    shipped = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    sections = get_type_hints(Settings).items()
    declared = {name: {f.name for f in dataclasses.fields(section)} for name, section in sections}
    assert {name: set(values) for name, values in shipped.items()} == declared


def test_settings_nothing_reads_are_not_offered():
    settings = default_settings()
    assert not hasattr(settings.orders, "currency")  # amounts are roubles by construction (README)
    assert not hasattr(settings.operators, "queue")  # the queue is the dialplan's IVR_OPERATOR_QUEUE


def test_a_config_file_overrides_only_the_keys_it_names(tmp_path):
    config = write(tmp_path / "other.toml", "[agi]\nport = 5000\n")
    settings = load_settings(environ={"IVR_CONFIG": str(config)})
    assert settings.agi.port == 5000
    assert date(2027, 1, 1) in settings.delivery.holidays  # the shipped defaults still stand


def test_the_example_config_loads(tmp_path):
    settings = load_settings(config_file=ROOT / "config" / "ivr.example.toml", environ={})
    assert settings.agi.drain_seconds < 10  # below Docker's default stop timeout
    assert settings.operators.names["PJSIP/101"] == "Анна Смирнова"


@pytest.mark.timeout(180)
def test_a_non_editable_install_reads_the_shipped_defaults(tmp_path):
    """What the Dockerfile does (`pip install .`): the installed package, run from another directory,
    has the same defaults, New Year holidays included, as this checkout."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
         "-w", str(wheels), str(ROOT)], capture_output=True, text=True, cwd=tmp_path, timeout=170,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("ivr-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True, text=True, cwd=tmp_path, timeout=170,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    probe = (
        "import ivr.settings as s, json; d = s.load_settings(environ={}); "
        "print(json.dumps([s.__file__, [x.isoformat() for x in d.delivery.holidays], d.agi.drain_seconds]))"
    )
    # -I: no user site, no PYTHONPATH, no current directory on the path; then only the install target
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    ran = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert ran.returncode == 0, ran.stderr
    module, holidays, drain = json.loads(ran.stdout)
    assert module.startswith(str(target))
    assert holidays == ["2026-12-31", "2027-01-01", "2027-01-02", "2027-01-07"]
    assert drain == default_settings().agi.drain_seconds


def test_a_local_file_overrides_the_config_file(tmp_path):
    local = write(tmp_path / "local.toml", '[agi]\nport = 4600\n\n[web]\napi_token = "s3cret"\nenabled = false\n')
    for settings in (
        load_settings(local_file=local, environ={}),
        load_settings(environ={"IVR_LOCAL_CONFIG": str(local)}),
    ):
        assert settings.agi.port == 4600
        assert settings.web.api_token == "s3cret" and settings.web.enabled is False
        # keys it does not mention keep the config file's values
        assert settings.agi.host == "127.0.0.1" and settings.web.port == 8080
        assert date(2027, 1, 1) in settings.delivery.holidays


def test_environment_overrides_win_over_both_files(tmp_path):
    config = write(tmp_path / "ivr.toml", '[agi]\nport = 4600\nhost = "0.0.0.0"\n')
    local = write(tmp_path / "local.toml", "[agi]\nport = 4700\n")
    env = {
        "IVR_AGI__PORT": "4800",
        "IVR_DATABASE__URL": "postgresql+asyncpg://ivr@db/ivr",
        "IVR_WEB__API_TOKEN": "from-env",
        "IVR_TEST_DATABASE_URL": "not a setting",  # no double underscore: not ours
        "HOME": "/root",
    }
    settings = load_settings(config_file=config, local_file=local, environ=env)
    assert settings.agi.port == 4800
    assert settings.agi.host == "0.0.0.0"  # from the config file, untouched by the rest
    assert settings.database.url == "postgresql+asyncpg://ivr@db/ivr"
    assert settings.web.api_token == "from-env"


def test_environment_keys_are_case_insensitive():
    assert load_settings(environ={"IVR_agi__Port": "4900"}).agi.port == 4900


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
     ("false", False), ("0", False), ("no", False), ("Off", False), (" false ", False)],
)
def test_bool_strings(raw, expected):
    assert load_settings(environ={"IVR_WEB__ENABLED": raw}).web.enabled is expected
    assert load_settings(environ={"IVR_ORDERS__PRICES_INCLUDE_VAT": raw}).orders.prices_include_vat is expected


def test_typed_values_from_the_environment():
    settings = load_settings(
        environ={
            "IVR_AGI__PORT": "4574",
            "IVR_AGI__ENV_TIMEOUT": "2.5",
            "IVR_ORDERS__VAT_RATES": "2026-01-01=22, 2019-01-01=10.5",
            "IVR_DELIVERY__CUTOFF": "13:30",
            "IVR_DELIVERY__DAYS": "1, 2,3",
            "IVR_DELIVERY__HOLIDAYS": "2026-12-31, 2027-01-01",
            "IVR_FLOW__MAX_QUANTITY": "20",
        }
    )
    assert settings.agi.port == 4574 and isinstance(settings.agi.port, int)
    assert settings.agi.env_timeout == 2.5
    assert settings.orders.vat_rates == ((date(2019, 1, 1), Decimal("10.5")), (date(2026, 1, 1), Decimal("22")))
    assert settings.delivery.cutoff == time(13, 30)
    assert settings.delivery.days == (1, 2, 3)
    assert settings.delivery.holidays == (date(2026, 12, 31), date(2027, 1, 1))
    assert settings.flow.max_quantity == 20


def test_empty_tuple_from_the_environment():
    settings = load_settings(environ={"IVR_DELIVERY__HOLIDAYS": ""})
    assert settings.delivery.holidays == ()


def test_trusted_proxies_from_the_environment_and_toml(tmp_path):
    assert default_settings().web.trusted_proxies == ()
    env = load_settings(environ={"IVR_WEB__TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    assert env.web.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    local = write(tmp_path / "local.toml", '[web]\ntrusted_proxies = ["::1"]\n')
    assert load_settings(local_file=local, environ={}).web.trusted_proxies == ("::1",)
    bad = write(tmp_path / "bad.toml", "[web]\ntrusted_proxies = 5\n")
    with pytest.raises(SettingsError, match="web.trusted_proxies"):
        load_settings(local_file=bad, environ={})


def test_typed_values_from_toml(tmp_path):
    local = write(
        tmp_path / "local.toml",
        "[delivery]\ncutoff = 12:15:00\nholidays = [2026-05-01, \"2026-05-09\"]\ndays = [1, 3, 5]\n"
        '[orders]\nvat_rates = [{from = 2019-01-01, rate = 10}, {from = "2027-01-01", rate = "12.5"}]\n'
        '[web]\nport = "9090"\n',
    )
    settings = load_settings(local_file=local, environ={})
    assert settings.delivery.cutoff == time(12, 15)
    assert settings.delivery.holidays == (date(2026, 5, 1), date(2026, 5, 9))
    assert settings.delivery.days == (1, 3, 5)
    assert settings.orders.vat_rates == ((date(2019, 1, 1), Decimal("10")), (date(2027, 1, 1), Decimal("12.5")))
    assert settings.web.port == 9090


def test_settings_are_frozen_and_replace_coerces():
    settings = load_settings(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.agi.port = 1  # type: ignore[misc]
    changed = settings.replace(agi={"port": "0"}, web={"enabled": "off"})
    assert changed.agi.port == 0 and changed.web.enabled is False
    assert settings.agi.port == 4573  # the original is untouched


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"IVR_AGI__PORT": "abc"}, "agi.port"),
        ({"IVR_AGI__PORT": "4573.9"}, "agi.port"),
        ({"IVR_WEB__ENABLED": "maybe"}, "web.enabled"),
        ({"IVR_AGI__ENV_TIMEOUT": "soon"}, "agi.env_timeout"),
        ({"IVR_ORDERS__VAT_RATES": "2019-01-01=twenty"}, "orders.vat_rates"),
        ({"IVR_ORDERS__VAT_RATES": "2019-01-01=NaN"}, "orders.vat_rates"),
        ({"IVR_ORDERS__VAT_RATES": "2019-01-01"}, "orders.vat_rates"),
        ({"IVR_ORDERS__VAT_RATES": ""}, "orders.vat_rates"),
        ({"IVR_ORDERS__VAT_RATES": "2019-01-01=20,2019-01-01=22"}, "orders.vat_rates"),
        ({"IVR_ORDERS__VAT_RATE": "20"}, "orders.vat_rate"),  # the single rate of old: unknown now
        ({"IVR_DELIVERY__CUTOFF": "25:00"}, "delivery.cutoff"),
        ({"IVR_DELIVERY__DAYS": "1,two"}, "delivery.days"),
        ({"IVR_DELIVERY__HOLIDAYS": "2026-02-30"}, "delivery.holidays"),
        ({"IVR_AGI__NO_SUCH_KEY": "1"}, "agi.no_such_key"),
        ({"IVR_NOSECTION__PORT": "1"}, "nosection"),
    ],
)
def test_malformed_or_unknown_environment_values_name_the_key(env, names):
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env)
    assert names in str(info.value)
    assert "environment" in str(info.value)


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("[agi]\nport = \"x\"\n", "agi.port"),
        ("[agi]\nport = true\n", "agi.port"),
        ("[agi]\nport = 4573.5\n", "agi.port"),
        ("[web]\nenabled = \"perhaps\"\n", "web.enabled"),
        ("[web]\nenabled = 7\n", "web.enabled"),
        ("[orders]\nvat_rates = [{from = \"2019-01-01\", rate = \"20%\"}]\n", "orders.vat_rates"),
        ("[orders]\nvat_rates = [{from = \"2019-01-01\", rate = 120}]\n", "orders.vat_rates"),
        ("[orders]\nvat_rates = [{since = \"2019-01-01\", rate = 20}]\n", "orders.vat_rates"),
        ("[orders]\nvat_rates = \"20\"\n", "orders.vat_rates"),
        ("[delivery]\ndays = 3\n", "delivery.days"),
        ("[delivery]\nholidays = [\"31.12.2026\"]\n", "delivery.holidays"),
        ("[web]\ntoken = \"x\"\n", "web.token"),
        ("[nosuch]\nkey = 1\n", "nosuch"),
        ("agi = 1\n", "agi"),
    ],
)
def test_malformed_or_unknown_file_values_name_the_file_and_key(tmp_path, toml, names):
    local = write(tmp_path / "local.toml", toml)
    with pytest.raises(SettingsError) as info:
        load_settings(local_file=local, environ={})
    assert names in str(info.value)
    assert str(local) in str(info.value)


def test_malformed_toml_names_the_file(tmp_path):
    broken = write(tmp_path / "broken.toml", "[agi\nport = 1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(local_file=broken, environ={})
    assert str(broken) in str(info.value)
    assert isinstance(info.value.__cause__, tomllib.TOMLDecodeError)

    with pytest.raises(SettingsError) as info:
        load_settings(environ={"IVR_CONFIG": str(broken)})
    assert str(broken) in str(info.value)


@pytest.mark.parametrize("variable", ["IVR_CONFIG", "IVR_LOCAL_CONFIG"])
def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path, variable):
    missing = tmp_path / "typo.toml"
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: str(missing)})
    assert str(missing) in str(info.value)
    with pytest.raises(SettingsError):
        load_settings(config_file=missing, environ={})
    with pytest.raises(SettingsError):
        load_settings(local_file=missing, environ={})


def test_a_bad_deal_pipeline_stops_the_start_with_one_line_naming_the_key(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text('[deals]\nclosed = ["paid", "archived"]\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"^deals.closed: 'archived' is not one of deals.stages"):
        load_settings(config_file=path, environ={})
    renamed = load_settings(environ={"IVR_DEALS__STAGES": "new=Заявка,won=Успех,lost=Провал",
                                     "IVR_DEALS__CLOSED": "won,lost", "IVR_DEALS__CANCELLED": "lost"})
    pipeline = renamed.deals.pipeline()
    assert (pipeline.codes, pipeline.initial, pipeline.name("won")) == (("new", "won", "lost"), "new", "Успех")
    with pytest.raises(SettingsError, match="deals.cancelled: 'cancelled' is not one of deals.stages"):
        load_settings(environ={"IVR_DEALS__STAGES": "new=Заявка,won=Успех", "IVR_DEALS__CLOSED": "won"})
