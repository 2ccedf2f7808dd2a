"""Coverage-guided fuzzing (atheris, libFuzzer) of the event decoder and each file connector's parser.

    python bench/fuzz.py                       # every target, 1,000,000 inputs each; prints a table
    python bench/fuzz.py --runs 20000 --seed 1 # the short seeded pass CI runs (tests/schemas/test_fuzz.py)
    python bench/fuzz.py --target csv --runs 0 --max-time 600

Each target must, for any bytes: return events or rejections with a reason (InvalidEvent with a
Reason and a detail), never raise anything else, never hang (libFuzzer -timeout), and every event it
accepts must serialise (what a connector publishes) and decode back to itself (what the pipeline
reads). For the SNAP formats the fast encoder must agree with the general path on every line, not
only on the one in 4096 that `clout ingest` samples. A crash leaves its input in --artifacts
(default .state/fuzz/); add it to tests/schemas/fuzz_crashers/ as a regression case.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("event", "jsonl", "snap-higgs", "snap-temporal", "csv")
SEEDS = {
    "event": [b'{"v":1,"event_id":"x:1","ts":1341100972000,"platform":"x","actor":"a","target":"b","kind":"repost"}',
              b'{"v":1,"event_id":"x:2","ts":1341100972000,"platform":"x","actor":"a:b","target":"c",'
              b'"kind":"like","extra":{"d":{"d":[1,2.5,"s",null,true]}},"lang":"en"}'],
    "snap-higgs": [b"1 2 1341100972 RT\n3 4 1341100973 MT\n5 6 1341100974 RE\n"],
    "snap-temporal": [b"# comment\nsrc dst time\n1 2 1082008561\n3 4 1082008562\n"],
    "csv": [b"1,2,1289241911.72836\n3,4,1e9\n\"5\",\"6\",\"1289241912\"\n"],
}
SEEDS["jsonl"] = [b"\n".join(SEEDS["event"]) + b"\n"]


def check_event(event: object) -> None:
    """An accepted event must re-serialise and decode to itself."""
    from clout.connectors.file import encode_event
    from clout.schemas import parse_event

    key, value, ts, _event_id = encode_event(event)  # type: ignore[arg-type]
    assert parse_event(value) == event, (value, event)
    assert key == event.actor.encode() and ts == event.ts  # type: ignore[attr-defined]


def check_rejection(error: Exception) -> None:
    from clout.schemas import Reason

    assert error.reason in Reason and error.detail, repr(error)  # type: ignore[attr-defined]


def fuzz_event(data: bytes) -> None:
    from clout.schemas import InvalidEvent, parse_event

    try:
        event = parse_event(data)
    except InvalidEvent as error:
        check_rejection(error)
        return
    check_event(event)


def fuzz_file(fmt: str, data: bytes) -> None:
    from clout.connectors import file
    from clout.schemas import InvalidEvent

    mapping = file.CsvMapping(columns=["source", "target", "time"]) if fmt == "csv" else None
    for line in file.read_source(io.BytesIO(data), fmt, mapping=mapping):
        if isinstance(line.result, InvalidEvent):
            check_rejection(line.result)
        else:
            check_event(line.result)
    if fmt in file.EDGE_FORMATS:
        fast_agrees_with_general(fmt, data)


def fast_agrees_with_general(fmt: str, data: bytes) -> None:
    from clout.connectors import file

    platform = file.EDGE_FORMATS[fmt]
    fast = file._EdgeEncoder(fmt, platform)
    decode = file._higgs_decoder(platform) if fmt == "snap-higgs" else file._temporal_decoder(platform)
    for position, raw in file._content_lines(io.BytesIO(data), fmt):
        encoded = fast.encode(raw, position)
        if encoded is not None:
            fast.check(encoded, file._decode(decode, raw, position))


def run_target(target: str, libfuzzer_args: list[str]) -> None:
    """Inside the fuzzing process: instrument clout's parsers and hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["clout"]):
        import clout.connectors.file
        import clout.schemas  # noqa: F401
    one = fuzz_event if target == "event" else (lambda data: fuzz_file(target, data))
    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


def corpus(target: str, folder: Path) -> Path:
    """A fresh folder with the target's seeds (libFuzzer adds what it finds)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(SEEDS[target]):
        (folder / f"seed-{n}").write_bytes(seed)
    return folder


def fuzz(target: str, runs: int, seed: int, max_time: int, artifacts: Path) -> dict[str, object]:
    """One target in its own process; libFuzzer's closing line gives the inputs and their rate."""
    artifacts.mkdir(parents=True, exist_ok=True)
    folder = corpus(target, artifacts / f"corpus-{target}")
    args = [f"-runs={runs}", f"-seed={seed}", "-timeout=10", "-rss_limit_mb=2048", "-max_len=4096",
            f"-artifact_prefix={artifacts}/{target}-", "-print_final_stats=1"]
    if max_time:
        args.append(f"-max_total_time={max_time}")
    command = [sys.executable, __file__, "--inside", target, "--", *args, str(folder)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.monotonic() - started
    executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
    inputs = int(executed[-1]) if executed else 0
    return {"target": target, "ok": done.returncode == 0, "inputs": inputs, "seconds": round(seconds, 1),
            "per_s": round(inputs / seconds) if seconds else 0, "log": done.stderr[-3000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=TARGETS, action="append", help="default: every target")
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target (0: until --max-time)")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    parser.add_argument("--max-time", type=int, default=0, help="seconds per target at most (0: no limit)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / ".state" / "fuzz")
    parser.add_argument("--inside", choices=TARGETS, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.inside:
        run_target(args.inside, [a for a in rest if a != "--"])
        return 0
    print("| target | inputs | seconds | inputs/s | result |\n| --- | ---: | ---: | ---: | --- |")
    failed = 0
    for target in args.target or TARGETS:
        result = fuzz(target, args.runs, args.seed, args.max_time, args.artifacts)
        failed += not result["ok"]
        verdict = "no crash, no hang" if result["ok"] else "CRASH (see below)"
        print(f"| {target} | {result['inputs']:,} | {result['seconds']} | {result['per_s']:,} | {verdict} |",
              flush=True)
        if not result["ok"]:
            print(result["log"], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
