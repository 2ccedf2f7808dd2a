"""The Redis key layout: the contract with dashboards and services that read clout's results.

Version 1. Every key starts with `<prefix>:v1:` (prefix `clout` by default). A change that would
break a reader gets a new version segment; keys of different versions can live side by side.
Curly braces are Redis Cluster hash tags: a window's keys share one slot.

| key | type | content |
| --- | --- | --- |
| `clout:v1:windows` | sorted set | member: window id `<start>-<end>` (epoch seconds); score: window end (epoch s) |
| `clout:v1:win:{<window>}:activity` | hash | field: user id; value: JSON activity (below) |
| `clout:v1:win:{<window>}:lb:received` | sorted set | member: user; score: interactions received |
| `clout:v1:win:{<window>}:lb:engagers` | sorted set | member: user; score: distinct engagers |
| `clout:v1:progress:{<group>}` | hash | pipeline bookkeeping for restarts (not for readers) |

Activity JSON: `{"received": {kind: n}, "sent": {kind: n}, "engagers": n, "in": n, "out": n}`; only kinds
with a non-zero count appear. Values are absolute: a later write of the same window replaces an
earlier one (figures grow while the window is open, and are final once the watermark passes
the window's end plus the allowed lateness).
Every result key carries a TTL of the configured retention.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "clout"

    @property
    def root(self) -> str:
        return f"{self.prefix}:v{LAYOUT_VERSION}"

    def windows(self) -> str:
        return f"{self.root}:windows"

    def activity(self, window: str) -> str:
        return f"{self.root}:win:{{{window}}}:activity"

    def leaderboard(self, window: str, metric: str) -> str:
        return f"{self.root}:win:{{{window}}}:lb:{metric}"

    def progress(self, group: str) -> str:
        return f"{self.root}:progress:{{{group}}}"
