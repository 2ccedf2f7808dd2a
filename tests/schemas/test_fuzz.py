"""The short seeded fuzz pass CI runs (bench/fuzz.py runs 1,000,000 inputs per target), and the
inputs that once crashed a parser, replayed as regression cases."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "bench" / "fuzz.py"
spec = importlib.util.spec_from_file_location("clout_bench_fuzz", FUZZ)
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)

# Inputs found to crash a parser before it was fixed (the fuzz targets raise on any of them again).
CRASHERS = [
    ("csv", b"1,2,inf\n"),  # int(float("inf")): OverflowError, not a rejection
    ("csv", b"1,2,1e400\n"),
    ("csv", b'"' + b"x" * 140_000 + b'",2,3\n4,5,1341100972\n'),  # csv field limit: csv.Error ended the replay
    ("csv", b"\xff,2,1341100972\n"),  # replaced bytes merged distinct ids
    ("jsonl", b'{"v":1,"event_id":"x:1","ts":1341100972000,"platform":"x","actor":"a","target":"b",'
              b'"kind":"like","extra":' + b'{"d":' * 300 + b"1" + b"}" * 301 + b"\n"),  # orjson cannot write it back
    ("snap-higgs", b"a{1} b 1341100972 RT\n"),  # braces took the fast path into a Redis hash tag
    ("snap-higgs", b"\xff\xfe 2 1341100972 RT\n"),
]


@pytest.mark.parametrize(("target", "data"), CRASHERS, ids=[f"{t}-{n}" for n, (t, _d) in enumerate(CRASHERS)])
def test_former_crashers_are_clean_events_or_rejections(target: str, data: bytes) -> None:
    if target == "event":
        fuzz.fuzz_event(data)
    else:
        fuzz.fuzz_file(target, data)


def test_seeded_fuzz_pass_finds_no_crash(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(FUZZ), "--runs", "15000", "--seed", "1", "--artifacts", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.count("no crash, no hang") == len(fuzz.TARGETS)
