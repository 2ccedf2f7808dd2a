"""The front door: commands that do not run the pipeline start fast, import no Beam and print nothing stray."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from clout.settings import Settings

HEAVY = ("apache_beam", "numpy", "scipy", "fastapi", "uvicorn", "kafka", "redis", "websockets")


def test_building_the_command_line_imports_nothing_heavy() -> None:
    probe = ("import sys; from clout.cli import build_parser; build_parser(); "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]" and result.stderr == ""


@pytest.mark.parametrize("command", [["config"], ["run", "--help"], ["serve", "--help"],
                                     ["ingest", "bluesky", "--help"]])
def test_no_stray_output_on_stderr(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "clout.cli", *command], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.servers
def test_query_user_is_quick_and_beam_free(settings: Settings) -> None:
    env = {**os.environ, "CLOUT_REDIS_URL": settings.redis_url, "CLOUT_KEY_PREFIX": settings.key_prefix}
    command = [sys.executable, "-m", "clout.cli", "query", "user", "nobody", "--window", "0-1"]
    result = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], env=env, capture_output=True,
                            text=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert result.stdout.strip() == "null" and result.returncode == 1  # no such user: null, exit 1
    assert not imported & {"apache_beam", "numpy", "scipy", "kafka", "fastapi"}, imported & set(HEAVY)
    assert [line for line in result.stderr.splitlines() if not line.startswith("import time:")] == []
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    subprocess.run(command, env=env, capture_output=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"clout query user: {cpu:.3f} s CPU, {wall:.3f} s wall")
    # CPU, not wall time: CI machines are shared. About 0.25 s here (half of it redis-py's import of
    # asyncio); importing Beam alone would add more than a second.
    assert cpu < 0.5, f"clout query user took {cpu:.3f} s of CPU"
