"""Layered settings: built-in defaults < config/ivr.toml < local file < IVR_SECTION__KEY environment."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import date, time
from decimal import Decimal
from pathlib import Path

import pytest

from ivr.settings import DEFAULT_CONFIG, Settings, SettingsError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_config_file_is_loaded_by_default():
    shipped = tomllib.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    settings = load_settings(environ={})
    assert settings.agi.port == shipped["agi"]["port"] == 4573
    assert settings.database.url == shipped["database"]["url"]
    assert settings.web.api_token == "change-me"
    assert settings.orders.vat_rate == Decimal("20") and isinstance(settings.orders.vat_rate, Decimal)
    assert settings.delivery.cutoff == time(14, 0)
    assert settings.delivery.days == (1, 2, 3, 4, 5, 6)
    # holidays exist only in the file (the built-in default is empty): proof that the file was read
    assert Settings().delivery.holidays == ()
    assert settings.delivery.holidays == tuple(date.fromisoformat(d) for d in shipped["delivery"]["holidays"])
    assert date(2027, 1, 1) in settings.delivery.holidays


def test_ivr_config_env_replaces_the_shipped_file(tmp_path):
    config = write(tmp_path / "other.toml", "[agi]\nport = 5000\n")
    settings = load_settings(environ={"IVR_CONFIG": str(config)})
    assert settings.agi.port == 5000
    assert settings.delivery.holidays == ()  # the shipped file was not read


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
            "IVR_ORDERS__VAT_RATE": "10.5",
            "IVR_DELIVERY__CUTOFF": "13:30",
            "IVR_DELIVERY__DAYS": "1, 2,3",
            "IVR_DELIVERY__HOLIDAYS": "2026-12-31, 2027-01-01",
            "IVR_FLOW__MAX_QUANTITY": "20",
        }
    )
    assert settings.agi.port == 4574 and isinstance(settings.agi.port, int)
    assert settings.agi.env_timeout == 2.5
    assert settings.orders.vat_rate == Decimal("10.5") and isinstance(settings.orders.vat_rate, Decimal)
    assert settings.delivery.cutoff == time(13, 30)
    assert settings.delivery.days == (1, 2, 3)
    assert settings.delivery.holidays == (date(2026, 12, 31), date(2027, 1, 1))
    assert settings.flow.max_quantity == 20


def test_empty_tuple_from_the_environment():
    settings = load_settings(environ={"IVR_DELIVERY__HOLIDAYS": ""})
    assert settings.delivery.holidays == ()


def test_typed_values_from_toml(tmp_path):
    local = write(
        tmp_path / "local.toml",
        "[delivery]\ncutoff = 12:15:00\nholidays = [2026-05-01, \"2026-05-09\"]\ndays = [1, 3, 5]\n"
        '[orders]\nvat_rate = 10\n[web]\nport = "9090"\n',
    )
    settings = load_settings(local_file=local, environ={})
    assert settings.delivery.cutoff == time(12, 15)
    assert settings.delivery.holidays == (date(2026, 5, 1), date(2026, 5, 9))
    assert settings.delivery.days == (1, 3, 5)
    assert settings.orders.vat_rate == Decimal("10")
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
        ({"IVR_ORDERS__VAT_RATE": "twenty"}, "orders.vat_rate"),
        ({"IVR_ORDERS__VAT_RATE": "NaN"}, "orders.vat_rate"),
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
        ("[orders]\nvat_rate = \"20%\"\n", "orders.vat_rate"),
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
