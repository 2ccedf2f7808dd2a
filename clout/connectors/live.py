"""What the live connectors (Bluesky Jetstream, Mastodon streaming) share: the reconnect loop with
jittered exponential backoff, the stop-when-idle rule, the cursor store, and their counts.

A live source is a function that opens one connection and yields its frames (``None`` when nothing
came within a tick, so the loop can flush and check idleness). The loop hands each frame to the
connector, flushes the publisher every ``flush_interval`` seconds (then, and only then, the
connector's cursor counts as acknowledged), and on any connection error waits and opens again.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from clout.progress import RateReporter

Frame = TypeVar("Frame")
TICK_SECONDS = 0.5


class SourceRefused(RuntimeError):
    """The source said no in a way a retry cannot fix (a wrong token): stop with a clear error."""


@dataclass
class Backoff:
    """Full-jitter exponential backoff (AWS architecture blog's "full jitter"): the n-th wait is
    uniform in [0, min(cap, base * 2**n)], so many clients dropped at once do not return at once."""

    base: float = 1.0
    cap: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class LiveCounts:
    """Figures of one live run; `summary()` is what the command prints at the end."""

    frames: int = 0
    events: int = 0
    rejected: int = 0
    reconnects: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    last_event_ms: int | None = None

    def publish(self, publisher: Any, events: list[Any], skipped: str | None) -> None:
        """Publish one frame's mapped events (or count why it was skipped), kind by kind."""
        if skipped:
            self.skipped[skipped] += 1
        for interaction in events:
            publisher.publish(interaction)
            self.by_kind[interaction.kind] += 1
            self.events += 1

    def lag_s(self) -> float:
        """How far the newest event is behind real time (seconds)."""
        return 0.0 if self.last_event_ms is None else max(0.0, time.time() - self.last_event_ms / 1000)

    def progress(self) -> dict[str, float]:
        return {"frames": self.frames, "events": self.events, "skipped": sum(self.skipped.values()),
                "rejected": self.rejected, "reconnects": self.reconnects, "lag_s": round(self.lag_s(), 1)}

    def summary(self) -> dict[str, Any]:
        return {"frames": self.frames, "events": self.events, "by_kind": dict(sorted(self.by_kind.items())),
                "skipped": dict(sorted(self.skipped.items())), "rejected": self.rejected,
                "reconnects": self.reconnects}


@dataclass(frozen=True)
class LiveOptions:
    stop_when_idle_s: float | None = None  # exit after this long without a frame (replays, tests)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    flush_interval_s: float = 0.5  # publish latency bound; the cursor advances at each flush
    progress_interval_s: float = 5.0


def run_live(label: str, open_stream: Callable[[], contextlib.AbstractContextManager[Iterator[Frame | None]]],
             handle: Callable[[Frame], None], flush: Callable[[], None], counts: LiveCounts,
             options: LiveOptions, retryable: tuple[type[BaseException], ...]) -> None:
    """Read frames until idle (or interrupted), reconnecting after every error in `retryable`."""
    backoff = Backoff(options.backoff_base_s, options.backoff_cap_s)
    reporter = RateReporter(label, counts.progress, rate_of="frames", interval=options.progress_interval_s)
    last_frame = last_flush = time.monotonic()

    def idle() -> bool:
        return options.stop_when_idle_s is not None and time.monotonic() - last_frame >= options.stop_when_idle_s

    try:
        while True:
            try:
                with open_stream() as frames:
                    for frame in frames:
                        now = time.monotonic()
                        if frame is not None:
                            last_frame = now
                            backoff.reset()
                            counts.frames += 1
                            handle(frame)
                        if now - last_flush >= options.flush_interval_s:
                            flush()
                            last_flush = now
                        reporter.tick()
                        if frame is None and idle():
                            return
                raise ConnectionError("the server ended the stream")
            except retryable as error:
                flush()
                last_flush = time.monotonic()
                if idle():
                    return
                counts.reconnects += 1
                delay = backoff.next_delay()
                print(f"{label}: connection lost ({_brief(error)}); reconnecting in {delay:.1f}s",
                      file=sys.stderr, flush=True)
                time.sleep(delay)
    finally:
        flush()
        reporter.summary()


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:200]


class CursorStore:
    """One small JSON file per source under ``<state_dir>/cursors/``, written atomically (write a
    temporary file, then rename), so a crash leaves the previous cursor, never half a file."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.path = Path(state_dir) / "cursors" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.json"

    def load(self) -> int | None:
        try:
            return int(orjson.loads(self.path.read_bytes())["cursor"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, cursor: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_bytes(orjson.dumps({"cursor": cursor, "saved_at": int(time.time())}))
        os.replace(partial, self.path)
