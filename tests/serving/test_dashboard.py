"""The dashboard in a real headless browser (Debian's chromium) against `clout serve` and seeded Redis.

Chromium is a test requirement (`make setup` installs it through `clout stack install`): when it is
missing the test fails and says how to install it, it does not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from layout_seed import INFLATED, World
from serving_harness import free_port

from clout.settings import Settings

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / ".state" / "test" / "dashboard.png"
CLOUT = Path(sys.executable).parent / "clout"
WIDTH, HEIGHT = 1400, 1700


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: run `make setup` (or `clout stack install`, or as root "
                    "`apt-get install -y chromium`); the dashboard's browser test needs it")
    return found


@pytest.fixture
def served(settings: Settings, world: World) -> Iterator[str]:
    """`clout serve` as a user starts it, on a free port, over the seeded key prefix."""
    port = free_port()
    env = {**os.environ, "CLOUT_REDIS_URL": settings.redis_url, "CLOUT_KEY_PREFIX": settings.key_prefix}
    process = subprocess.Popen([str(CLOUT), "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
        output, _ = process.communicate(timeout=20)
        assert "Application shutdown complete" in output, output
        assert f"dashboard {url}/" in output


def _wait_until_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"clout serve exited: {process.stdout.read() if process.stdout else ''}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("clout serve did not answer /healthz within 30 s")


def _browse(chromium: str, profile: Path, *args: str, budget_ms: int = 8000) -> subprocess.CompletedProcess:
    """Headless chromium with a throwaway profile; virtual time lets the page's polls run quickly."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               "--no-first-run", "--mute-audio", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
               *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_dashboard_renders_leaderboards_flags_groups_and_history(chromium: str, served: str, world: World,
                                                                 tmp_path: Path) -> None:
    dom = _browse(chromium, tmp_path / "profile", "--dump-dom", f"{served}/#user=u7").stdout
    assert 'data-loaded="true"' in dom, "the dashboard never finished a refresh"
    raw_rows = re.findall(r'<tr class="(inflated)?">(.*?)</tr>', _table(dom, "raw-board"))
    inflated = {_users(row)[0] for marked, row in raw_rows if marked}
    assert inflated == set(INFLATED), "the inflated accounts do not stand out"
    assert len(raw_rows) == 25 and _users(raw_rows[0][1]) == ["u1"]
    assert f"+{world.scores['u3'] - INFLATED['u3']:.1f}" in dom  # u3's gap, raw - clean
    assert "u3" not in _users(_table(dom, "clean-board"))[:10]
    flags = _table(dom, "flag-table")
    assert "120 likes from 118 new accounts within 14 minutes" in flags and "acts every 60 s round the clock" in flags
    assert world.group["id"] in dom and "synchrony 0.91" in dom
    chart = re.search(r'<svg[^>]*class="line-chart".*?</svg>', dom, re.S)
    assert chart and chart.group(0).count("<polyline") == 2 and chart.group(0).count("<circle") == 12
    assert "score history of u7" in chart.group(0)
    assert re.search(r'id="final-badge" class="badge open">open<', dom)
    assert re.search(r'id="updated">· updated \d+ s ago<', dom), "the poll loop did not run"


def test_dashboard_screenshot(chromium: str, served: str, tmp_path: Path) -> None:
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    _browse(chromium, tmp_path / "profile", f"--screenshot={SCREENSHOT}", f"--window-size={WIDTH},{HEIGHT}",
            f"{served}/#user=u3")
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    assert len(data) > 100_000, f"a {len(data)} byte screenshot is too small to show a rendered dashboard"


def _table(dom: str, table_id: str) -> str:
    match = re.search(rf'<table id="{table_id}".*?</table>', dom, re.S)
    assert match, f"no table {table_id}"
    return match.group(0)


def _users(html: str) -> list[str]:
    return re.findall(r'<a href="#user=[^"]*" class="user[^"]*">([^<]+)</a>', html)
