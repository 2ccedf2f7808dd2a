"""Settings: what a parent command hands its clout child processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from clout.settings import Secret, Settings, load_settings


def test_a_child_loads_the_parents_settings_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `clout demo --kafka-port 39092 --bootstrap 127.0.0.1:39092` started its pipeline on
    the default bootstrap (flags did not reach the children) and failed to start."""
    parent = Settings().replace(kafka_bootstrap="127.0.0.1:39092", redis_url="redis://127.0.0.1:36379/0",
                                partitions=2, kafka_delivery_timeout_s=7.5, state_dir=Path("/tmp/s"),
                                redis_password=Secret("pw"), group="demo")
    for name, value in parent.environment().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == parent
