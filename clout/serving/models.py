"""Typed shapes of what the serving layer reads (layout v1's JSON values) and what it answers.

Stored values are parsed into these models as they come out of Redis, so the API, the client and
the subscriber share one definition of each format. Fields the contract lists but a writer left out
come back as null instead of failing the read; unknown fields are ignored (a newer writer may add some).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Stored(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# --- layout v1 values -----------------------------------------------------------------------------


class Parts(Stored):
    """The three parts of an influence score, each normalised to 0..1."""

    reach: float | None = None
    amplification: float | None = None
    network: float | None = None


class Influence(Stored):
    """A user's influence in one window (`win:{w}:influence` field), formulas in docs/influence.md."""

    score: int | float = Field(description="influence 1..100 (rounded; the boards keep it unrounded)")
    reach: int | float | None = Field(None, description="accounts reached")
    amplification: float | None = Field(None, description="0..1")
    network: float | None = Field(None, description="weighted PageRank")
    parts: Parts | None = None
    rank: int | None = Field(None, description="1 = highest score in the window")
    percentile: float | None = Field(None, description="0..100")
    platform: str | None = None
    clean_score: int | float | None = Field(None, description="1..100 with flagged engagement removed; null if not "
                                                              "computed")
    final: bool | None = Field(None, description="true once the window is closed (absent from `latest`)")


class Latest(Influence):
    """`user:{u}:latest`: the influence of the user's newest window plus where it comes from."""

    window: str
    end: int
    long_term: float | None = Field(None, description="time-decayed mean of recent window scores (docs/influence.md)")


class Activity(Stored):
    """`win:{w}:activity` field: interactions received and sent by kind, distinct engagers."""

    received: dict[str, int] = Field(default_factory=dict)
    sent: dict[str, int] = Field(default_factory=dict)
    engagers: int = 0
    in_: int = Field(0, alias="in")
    out: int = 0


class Flag(Stored):
    """One detector's verdict on a user (`user:{u}:flags` field, `flags:stream` entry)."""

    user: str
    window: str
    detector: str = Field(description="burst | bot | lockstep | microcluster | account")
    score: float = Field(description="0..1")
    reasons: list[str] = Field(default_factory=list)
    evidence: dict[str, float] = Field(default_factory=dict)
    group: str | None = None


class Group(Stored):
    """A coordination group (`group:{id}`): accounts acting on the same targets in lockstep."""

    id: str
    window: str
    members: list[str]
    targets: list[str] = Field(default_factory=list)
    synchrony: float | None = Field(None, description="0..1")
    score: float | None = Field(None, description="0..1")


class HistoryPoint(Stored):
    """One window of `user:{u}:history`."""

    window: str
    end: int
    score: int | float
    clean_score: int | float | None = None


# --- answers --------------------------------------------------------------------------------------


class WindowInfo(BaseModel):
    """A window and its graph (`win:{w}:meta`); `final` decides how long answers about it may be cached."""

    id: str
    start: int
    end: int
    final: bool = Field(False, description="true once the window's final pane is written: its answers never change")
    users: int | None = Field(None, description="users in the window's graph; null until it is computed")
    events: int | None = Field(None, description="events in the window's graph")


class Freshness(BaseModel):
    """How recent the newest window's results are, by the serving host's clock."""

    window: WindowInfo | None
    age_seconds: float | None = Field(description="seconds since the pipeline last wrote (retention - TTL of the "
                                                  "windows index, which every write refreshes); null if unknown")


class UserView(BaseModel):
    user: str
    window: str
    end: int
    influence: Influence
    long_term: float | None = None
    flags: list[Flag]


class UserWindowView(BaseModel):
    user: str
    window: WindowInfo
    influence: Influence | None
    activity: Activity | None


class UserHistory(BaseModel):
    user: str
    points: list[HistoryPoint] = Field(description="oldest first")


class Page(BaseModel):
    offset: int
    limit: int
    total: int


class BoardEntry(BaseModel):
    rank: int = Field(description="position on this board, 1-based")
    user: str
    value: float = Field(description="the board's own figure")
    score: float | None = None
    clean_score: float | None = None
    gap: float | None = Field(None, description="score - clean_score: how much flagged engagement inflates it")
    score_rank: int | None = None
    clean_rank: int | None = None
    flag_score: float | None = Field(None, description="highest flag score in the window, null if not flagged")


class Leaderboard(BaseModel):
    window: WindowInfo
    board: str
    platform: str | None
    page: Page
    entries: list[BoardEntry]


class WindowList(BaseModel):
    page: Page
    windows: list[WindowInfo]


class FlaggedEntry(BaseModel):
    user: str
    score: float
    flags: list[Flag] = Field(description="the user's flags of this window (and detector), with reasons")


class FlaggedList(BaseModel):
    window: WindowInfo
    detector: str | None
    page: Page
    entries: list[FlaggedEntry]


class GroupEntry(BaseModel):
    id: str
    size: int
    group: Group | None = Field(description="null if the group's record has expired")


class GroupList(BaseModel):
    window: WindowInfo
    page: Page
    groups: list[GroupEntry]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    redis: bool
    reasons: list[str]
    max_staleness_seconds: float | None
    freshness: Freshness | None


class Problem(BaseModel):
    where: str
    problem: str


class ErrorBody(BaseModel):
    error: str = Field(description="invalid_input | not_found | method_not_allowed | bad_stored_data | "
                                   "redis_unavailable | internal")
    detail: str
    problems: list[Problem] = Field(default_factory=list)
