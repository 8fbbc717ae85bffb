"""Settings: defaults, one clear line per bad value, secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from helpline.core.config import ConfigError, Settings, load_settings

HELPLINE = [sys.executable, "-m", "helpline.cli"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HELPLINE_") and not name.startswith("HELPLINE_TEST_"):
            monkeypatch.delenv(name)


def test_defaults_put_everything_under_the_data_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_DATA_DIR", "/srv/helpline")
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:////srv/helpline/helpline.db"
    assert settings.master_key_file == Path("/srv/helpline/master.key")
    assert settings.redis_url is None
    assert settings.sla_notice_hours == 24
    assert not settings.is_https


def test_values_come_from_helpline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_DATABASE_URL", "postgresql://u:p@db/helpline")
    monkeypatch.setenv("HELPLINE_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("HELPLINE_BASE_URL", "https://help.example/")
    monkeypatch.setenv("HELPLINE_INBOUND_ADDRESSES", "Help@Example.org, meld@example.org")
    settings = load_settings()
    assert settings.database_url == "postgresql+asyncpg://u:p@db/helpline"
    assert settings.base_url == "https://help.example"
    assert settings.is_https
    assert settings.inbound_address_list == ["help@example.org", "meld@example.org"]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HELPLINE_BASE_URL", "ftp://help.example", "must start with http:// or https://"),
        ("HELPLINE_DATABASE_URL", "mysql://x/y", "sqlite+aiosqlite:// or postgresql+asyncpg://"),
        ("HELPLINE_REDIS_URL", "memcached://x", "redis://"),
        ("HELPLINE_SMTP_OUT_PORT", "seventy", "valid integer"),
        ("HELPLINE_SMTP_OUT_SECURITY", "maybe", "'none', 'starttls' or 'tls'"),
        ("HELPLINE_RETENTION_EVIDENCE_DAYS", "0", "greater than or equal to 1"),
        ("HELPLINE_INBOUND_ADDRESSES", "help.example.org", "is not an e-mail address"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_problem(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert says in message
    assert "\n" not in message


def test_the_command_fails_at_start_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HELPLINE_DATA_DIR": str(tmp_path), "HELPLINE_BASE_URL": "nope"}
    result = subprocess.run(
        [*HELPLINE, "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: HELPLINE_BASE_URL: must start with http:// or https://"
    )


def test_a_missing_master_key_says_how_to_make_one(tmp_path: Path) -> None:
    env = {**os.environ, "HELPLINE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [*HELPLINE, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: HELPLINE_MASTER_KEY: not set, and no key file at ")
    assert "helpline keys init" in line


def test_secrets_are_masked_in_repr() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://helpline:db-secret-1@db/helpline",
        redis_url="redis://:redis-secret-2@cache:6379/0",
        master_key=SecretStr("a2V5LXNlY3JldC0z"),
        smtp_out_password=SecretStr("smtp-secret-4"),
    )
    shown = repr(settings) + str(settings)
    for secret in ("db-secret-1", "redis-secret-2", "a2V5LXNlY3JldC0z", "smtp-secret-4"):
        assert secret not in shown
    assert "postgresql+asyncpg://helpline:***@db/helpline" in shown
    # the real values are still there for the code that needs them
    assert settings.database_url.endswith("db-secret-1@db/helpline")
