"""Secrets come from the environment, a TOML file or a mounted secret file, and never print."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clout.settings import Secret, load_settings


def test_secret_from_a_mounted_file_wins_and_is_masked(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("from-the-file\n")
    monkeypatch.setenv("CLOUT_REDIS_PASSWORD", "from-the-env")
    monkeypatch.setenv("CLOUT_REDIS_PASSWORD_FILE", str(secret))
    settings = load_settings()
    assert settings.redis_password == Secret("from-the-file")
    assert "from-the-file" not in repr(settings) + str(settings.redacted())


def test_secret_file_named_in_toml(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "kafka"
    secret.write_text("kafka-secret")
    config = tmp_path / "clout.toml"
    config.write_text(f'kafka_sasl_mechanism = "SCRAM-SHA-512"\nkafka_sasl_username = "clout"\n'
                      f'kafka_sasl_password_file = "{secret}"\n')
    monkeypatch.delenv("CLOUT_KAFKA_SASL_PASSWORD", raising=False)
    settings = load_settings(config)
    assert settings.kafka_sasl_password == Secret("kafka-secret")
    assert settings.kafka_client_config()["sasl_plain_password"] == "kafka-secret"


def test_a_missing_secret_file_is_a_clear_error_without_the_secret(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLOUT_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="cannot read the secret file for kafka_sasl_password"):
        load_settings()


def test_config_and_help_never_show_a_secret(tmp_path) -> None:
    env = {"CLOUT_REDIS_PASSWORD": "pw-in-env-123", "CLOUT_KAFKA_SASL_PASSWORD": "pw-in-env-456",
           "CLOUT_REDIS_URL": "redis://u:pw-in-url-789@127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    for args in (["config"], ["--help"], ["serve", "--help"], ["run", "--help"]):
        done = subprocess.run([sys.executable, "-m", "clout.cli", *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for secret in ("pw-in-env-123", "pw-in-env-456", "pw-in-url-789"):
            assert secret not in done.stdout + done.stderr
