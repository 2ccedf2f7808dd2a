"""The Redis key layout: the contract with dashboards and services that read clout's results.

Version 1. Every key starts with `<prefix>:v1:` (prefix `clout` by default). A change that would
break a reader gets a new version segment; keys of different versions can live side by side.

Curly braces are Redis Cluster hash tags: only the part inside `{...}` picks a key's hash slot, and
a transaction, a Lua script or a multi-key command must keep to one slot on a cluster. So the keys
written together share a tag: a window's keys share `{<window>}` (a pane replaces its flagged sets
and group list in one MULTI), a user's keys share `{<user>}` (one Lua call writes history and
latest), and the `announced` sets carry the flag stream's whole name as their tag, which puts them
in the stream's slot (an announcement and its stream entry are one MULTI). Everything else is
single-key commands, pipelined without a transaction. Ids inside a tag never contain braces
(`clout/schemas/ids.py`), nor may the prefix.

| key | type | content |
| --- | --- | --- |
| `clout:v1:windows` | sorted set | member: window id `<start>-<end>` (epoch seconds); score: window end (epoch s) |
| `clout:v1:win:{<window>}:activity` | hash | field: user id; value: JSON activity (below) |
| `clout:v1:win:{<window>}:lb:received` | sorted set | member: user; score: interactions received |
| `clout:v1:win:{<window>}:lb:engagers` | sorted set | member: user; score: distinct engagers |
| `clout:v1:progress:{<group>}` | hash | pipeline bookkeeping for restarts (not for readers) |
| `clout:v1:accounts:{<group>}:<shards>:<shard>` | hash | field: day boundary (ms) the account shard's state is folded through; value: the state (zlib); the newest 3 days (bookkeeping for restarts) |
| `clout:v1:announced:{clout:v1:flags:stream}:<window>` | set | `<detector>:<user>` of the window's flags already announced (bookkeeping; in the stream's slot) |
| `clout:v1:scored` | sorted set | windows with influence and flags written (on-time pane or later), scored by end; newest = the latest complete window |
| `clout:v1:win:{<window>}:influence` | hash | field: user who received engagement; value: JSON influence (below); anyone else scores 1 |
| `clout:v1:win:{<window>}:lb:score` | sorted set | member: user; score: influence score (1..100, unrounded) |
| `clout:v1:win:{<window>}:lb:score:platform:<platform>` | sorted set | the same, users of one platform |
| `clout:v1:win:{<window>}:lb:clean` | sorted set | member: user; score: clean influence score (flagged engagement removed) |
| `clout:v1:win:{<window>}:meta` | hash | `users` (all), `active` (received engagement), `events`; `final` 1 once the final pane is written |
| `clout:v1:win:{<window>}:flagged` | sorted set | member: user; score: highest flag score in [0,1] |
| `clout:v1:win:{<window>}:flagged:<detector>` | sorted set | the same, one detector |
| `clout:v1:win:{<window>}:groups` | sorted set | member: coordination group id; score: number of members |
| `clout:v1:user:{<user>}:latest` | string | JSON influence of the newest window the user received engagement in (no `final`), plus `window`, `end`, `long_term` |
| `clout:v1:user:{<user>}:history` | hash | field: window id; value: JSON `{"end": s, "score": n, "clean_score": n}`; the last history_len periods |
| `clout:v1:user:{<user>}:flags` | hash | field: detector; value: JSON flag (below); TTL = flag TTL |
| `clout:v1:group:{<group id>}` | string | JSON coordination group (below) |
| `clout:v1:flags:stream` | stream | one entry per flag of a final pane, once; field `flag` = JSON flag; capped (MAXLEN ~) |

Activity JSON: `{"received": {kind: n}, "sent": {kind: n}, "engagers": n, "in": n, "out": n}`; only kinds
with a non-zero count appear. Values are absolute: a later write of the same window replaces an
earlier one (figures grow while the window is open, and are final once the watermark passes
the window's end plus the allowed lateness).
Every result key carries a TTL of the configured retention.

Influence JSON: `{"score": 1..100, "reach": n, "amplification": 0..1, "network": pagerank,
"parts": {"reach": 0..1, "amplification": 0..1, "network": 0..1}, "rank": n, "percentile": 0..100,
"platform": str, "clean_score": 1..100 | null, "final": bool}` (formulas in docs/influence.md).

Flag JSON: `{"user": str, "window": id, "detector": "burst" | "bot" | "lockstep" | "microcluster" | "account",
"score": 0..1, "reasons": [str], "evidence": {name: number}, "group": id | null}`.
Group JSON: `{"id": str, "window": id, "members": [user], "targets": [user], "synchrony": 0..1,
"score": 0..1}`. Every new flag is also published to the Kafka topic `flags` (key: user).
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "clout"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "{}*?[]\\ "):
            raise ValueError(f"key prefix {self.prefix!r} must be non-empty, without braces (they would move the "
                             "keys' Redis Cluster hash tags), glob characters, backslash or spaces")

    @property
    def root(self) -> str:
        return f"{self.prefix}:v{LAYOUT_VERSION}"

    def windows(self) -> str:
        return f"{self.root}:windows"

    def scored_windows(self) -> str:
        return f"{self.root}:scored"

    def activity(self, window: str) -> str:
        return f"{self.root}:win:{{{window}}}:activity"

    def leaderboard(self, window: str, metric: str) -> str:
        return f"{self.root}:win:{{{window}}}:lb:{metric}"


    def progress(self, group: str) -> str:
        return f"{self.root}:progress:{{{group}}}"

    def account_snapshots(self, group: str, shards: int, shard: int) -> str:
        """One account shard's state snapshots (bookkeeping for restarts, not for readers)."""
        return f"{self.root}:accounts:{{{group}}}:{shards}:{shard}"

    def influence(self, window: str) -> str:
        return f"{self.root}:win:{{{window}}}:influence"

    def score_board(self, window: str, platform: str | None = None) -> str:
        suffix = f":platform:{platform}" if platform else ""
        return f"{self.leaderboard(window, 'score')}{suffix}"

    def clean_board(self, window: str) -> str:
        return self.leaderboard(window, "clean")

    def window_meta(self, window: str) -> str:
        return f"{self.root}:win:{{{window}}}:meta"

    def flagged(self, window: str, detector: str | None = None) -> str:
        suffix = f":{detector}" if detector else ""
        return f"{self.root}:win:{{{window}}}:flagged{suffix}"

    def groups(self, window: str) -> str:
        return f"{self.root}:win:{{{window}}}:groups"

    def user_latest(self, user: str) -> str:
        return f"{self.root}:user:{{{user}}}:latest"

    def user_history(self, user: str) -> str:
        return f"{self.root}:user:{{{user}}}:history"

    def user_flags(self, user: str) -> str:
        return f"{self.root}:user:{{{user}}}:flags"

    def group(self, group_id: str) -> str:
        return f"{self.root}:group:{{{group_id}}}"

    def announced(self, window: str) -> str:
        """Tagged with the stream's whole name (which has no braces), so it hashes to the stream's slot."""
        return f"{self.root}:announced:{{{self.flag_stream()}}}:{window}"

    def flag_stream(self) -> str:
        return f"{self.root}:flags:stream"
