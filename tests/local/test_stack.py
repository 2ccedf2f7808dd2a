"""The local stack: `up` is idempotent, `down` stops only what `up` started."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clout.local import stack
from clout.settings import Settings

pytestmark = pytest.mark.servers


def test_up_twice_is_harmless(stack_settings: Settings) -> None:
    before = {s.name: stack.running_pid(s) for s in stack.servers(stack_settings)}
    lines: list[str] = []
    stack.up(stack_settings, say=lines.append)
    after = {s.name: stack.running_pid(s) for s in stack.servers(stack_settings)}
    assert before == after and all(after.values())
    assert any("already running" in line for line in lines)
    assert all(report["answers"] for report in stack.status(stack_settings).values())


def test_down_leaves_processes_it_did_not_start(stack_settings: Settings, tmp_path: Path) -> None:
    """A pid file naming some other process (a recycled pid, a hand-started server) is not ours to stop."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        settings = stack_settings.replace(state_dir=tmp_path, kafka_port=29192, redis_port=26479)
        for server in stack.servers(settings):
            server.pid_file.write_text(f"{other.pid} 1")  # right pid, wrong start time
        lines: list[str] = []
        stack.down(settings, say=lines.append)
        assert other.poll() is None, "down stopped a process it did not start"
        assert lines == ["kafka: not running", "redis: not running"]
    finally:
        other.kill()


def test_a_taken_port_is_named(stack_settings: Settings, tmp_path: Path) -> None:
    settings = stack_settings.replace(state_dir=tmp_path, kafka_port=stack_settings.redis_port)
    with pytest.raises(stack.StackError, match=f"port {stack_settings.redis_port} is already in use"):
        stack.up(settings, say=lambda _line: None)


def test_new_cluster_ids_never_look_like_an_option() -> None:
    ids = [stack.new_cluster_id() for _ in range(2_000)]  # about 31 would start with '-' if drawn plainly
    assert all(not i.startswith("-") and len(i) == 22 for i in ids) and len(set(ids)) == len(ids)


def test_the_prism_patches_apply_to_the_beam_source_they_were_written_for() -> None:
    """Each patch finds the code it fixes exactly once in the Beam Go module the stack builds from,
    and the built binary's name carries the patch level, so an unpatched build is never reused."""
    module = f"github.com/apache/beam/sdks/v2@v{stack.BEAM_VERSION}"
    listing = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True, check=True)
    source = Path(json.loads(listing.stdout)["Dir"])
    for relative, before, _ in stack.PRISM_PATCHES:
        assert (source / relative).read_text().count(before) == 1, relative
    assert stack.prism_binary(Settings()).name.endswith(f"-clout{stack.PRISM_PATCH_LEVEL}")


def test_a_patch_whose_code_is_gone_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "stage.go"
    path.write_text("package internal\n")
    with pytest.raises(stack.StackError, match="not there exactly once"):
        stack._patch(path, "case <-progTick.C:", "")
