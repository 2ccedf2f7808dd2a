"""Every read of the serving layer, as plans (`plans`) shared by the async API and the sync client.

A user lookup is one round trip; a read that names the window `latest` takes one more to resolve
it. Keys come only from `KeyLayout`, after the ids passed `validation`; ids read back from Redis
(window ids in the index, flagged users, group ids) are checked again before they form a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from clout.serving.models import (
    Activity,
    BoardEntry,
    Flag,
    FlaggedEntry,
    FlaggedList,
    Freshness,
    Group,
    GroupEntry,
    GroupList,
    HistoryPoint,
    Influence,
    Latest,
    Leaderboard,
    Page,
    UserHistory,
    UserView,
    UserWindowView,
    WindowInfo,
    WindowList,
)
from clout.serving.plans import Batch, NotFound, Plan, StoredDataError, cmd
from clout.serving.validation import (
    BOARDS,
    DETECTORS,
    LATEST,
    InvalidInput,
    check_choice,
    check_id,
    check_page,
    check_platform,
    check_window,
)
from clout.store.layout import KeyLayout

M = TypeVar("M", bound=BaseModel)


# --- parsing stored values ------------------------------------------------------------------------


def parse(model: type[M], raw: str | bytes, what: str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise StoredDataError(f"{what} is not layout v1 JSON: {error.error_count()} problem(s)") from error


def parse_dict(model: type[M], value: dict[str, Any], what: str) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise StoredDataError(f"{what} is not layout v1: {error.error_count()} problem(s)") from error


def _object(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise StoredDataError(f"{what} is not JSON") from error
    if not isinstance(value, dict):
        raise StoredDataError(f"{what} is not a JSON object")
    return value


def _number(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def window_info(window: str, end: float | None, meta: dict[str, str]) -> WindowInfo:
    """A window's record; NotFound unless the windows index lists it."""
    if end is None:
        raise NotFound(f"no window {window}")
    start = int(indexed_window(window).split("-", 1)[0])
    return WindowInfo(id=window, start=start, end=int(end), final=meta.get("final") == "1",
                      users=_number(meta.get("users")), events=_number(meta.get("events")))


def indexed_window(window: str) -> str:
    """A window id read from the index; a malformed one is a writer's bug and must not become a key."""
    try:
        return check_window(window, allow_latest=False)
    except InvalidInput as error:
        raise StoredDataError(f"the windows index holds {window!r}, not a window id") from error


# --- windows --------------------------------------------------------------------------------------


def resolve_window(layout: KeyLayout, window: str) -> Plan[str]:
    """The window id an alias names (one round trip for `latest`, none for an id)."""
    check_window(window)
    if window != LATEST:
        return window
    # The newest window with influence and flags written; before the first one closes, the newest open one.
    scored, newest = yield [cmd("zrevrange", layout.scored_windows(), 0, 0), cmd("zrevrange", layout.windows(), 0, 0)]
    if not scored and not newest:
        raise NotFound("no windows yet (is `clout run` running?)")
    return indexed_window((scored or newest)[0])


def window_header(layout: KeyLayout, window: str) -> Batch:
    """Commands whose replies `window_info` needs; prepended to a window read's own batch."""
    return [cmd("zscore", layout.windows(), window), cmd("hgetall", layout.window_meta(window))]


def window(layout: KeyLayout, window: str) -> Plan[WindowInfo]:
    window = yield from resolve_window(layout, window)
    end, meta = yield window_header(layout, window)
    return window_info(window, end, meta)


def windows(layout: KeyLayout, offset: int = 0, limit: int = 20) -> Plan[WindowList]:
    """Newest first, each with its meta."""
    check_page(offset, limit)
    ranked, total = yield [cmd("zrevrange", layout.windows(), offset, offset + limit - 1, withscores=True),
                           cmd("zcard", layout.windows())]
    metas = (yield [cmd("hgetall", layout.window_meta(indexed_window(w))) for w, _ in ranked]) if ranked else []
    infos = [window_info(w, end, meta) for (w, end), meta in zip(ranked, metas, strict=True)]
    return WindowList(page=Page(offset=offset, limit=limit, total=total), windows=infos)


def freshness(layout: KeyLayout, retention_seconds: int) -> Plan[Freshness]:
    """The newest window and how long ago the pipeline last wrote.

    Every write of window totals sets the windows index's TTL to the retention, so retention - TTL
    is the time since the last write, by Redis's clock (the layout stores no write time). It
    assumes the reader's `retention_seconds` is the pipeline's, as both come from the same settings.
    """
    (newest, ttl) = yield [cmd("zrevrange", layout.windows(), 0, 0, withscores=True), cmd("ttl", layout.windows())]
    if not newest:
        return Freshness(window=None, age_seconds=None)
    window_id, end = indexed_window(newest[0][0]), newest[0][1]
    (meta,) = yield [cmd("hgetall", layout.window_meta(window_id))]
    age = float(max(0, retention_seconds - ttl)) if ttl is not None and ttl >= 0 else None
    return Freshness(window=window_info(window_id, end, meta), age_seconds=age)


# --- users ----------------------------------------------------------------------------------------


def user(layout: KeyLayout, user_id: str) -> Plan[UserView]:
    """Current influence (newest window), long-term influence and every live flag, in one round trip."""
    check_id(user_id, "user")
    raw, flags = yield [cmd("get", layout.user_latest(user_id)), cmd("hgetall", layout.user_flags(user_id))]
    if raw is None:
        raise NotFound(f"no influence for user {user_id}")
    latest = parse(Latest, raw, f"latest of {user_id}")
    influence = Influence.model_construct(**{name: getattr(latest, name) for name in Influence.model_fields})
    return UserView(user=user_id, window=latest.window, end=latest.end, influence=influence,
                    long_term=latest.long_term, flags=_flags(user_id, flags))


def _flags(user_id: str, stored: dict[str, str]) -> list[Flag]:
    flags = [parse(Flag, raw, f"flag {detector} of {user_id}") for detector, raw in sorted(stored.items())]
    return sorted(flags, key=lambda flag: -flag.score)


def user_in_window(layout: KeyLayout, user_id: str, window_ref: str) -> Plan[UserWindowView]:
    check_id(user_id, "user")
    window_id = yield from resolve_window(layout, window_ref)
    end, meta, influence, activity = yield [*window_header(layout, window_id),
                                            cmd("hget", layout.influence(window_id), user_id),
                                            cmd("hget", layout.activity(window_id), user_id)]
    info = window_info(window_id, end, meta)
    if influence is None and activity is None:
        raise NotFound(f"user {user_id} has no results in window {window_id}")
    return UserWindowView(
        user=user_id, window=info,
        influence=parse(Influence, influence, f"influence of {user_id}") if influence is not None else None,
        activity=parse(Activity, activity, f"activity of {user_id}") if activity is not None else None)


def history(layout: KeyLayout, user_id: str) -> Plan[UserHistory]:
    check_id(user_id, "user")
    (stored,) = yield [cmd("hgetall", layout.user_history(user_id))]
    if not stored:
        raise NotFound(f"no history for user {user_id}")
    what = f"history of {user_id}"
    points = [parse_dict(HistoryPoint, {**_object(raw, what), "window": window_id}, what)
              for window_id, raw in stored.items()]
    return UserHistory(user=user_id, points=sorted(points, key=lambda point: point.end))


# --- leaderboards ---------------------------------------------------------------------------------


def leaderboard(layout: KeyLayout, window_ref: str, board: str = "score", platform: str | None = None,
                offset: int = 0, limit: int = 20) -> Plan[Leaderboard]:
    """One board, each entry beside the user's raw and clean score, both ranks and flag score."""
    check_choice(board, BOARDS, "board")
    check_platform(platform)
    check_page(offset, limit)
    if platform and board != "score":
        raise InvalidInput("platform", "only the score board is kept per platform")
    window_id, info, ranked, total = yield from _ranked_page(
        layout, window_ref,
        lambda w: layout.score_board(w, platform) if board == "score" else layout.leaderboard(w, board),
        offset, limit)
    entries = (yield from _board_entries(layout, window_id, ranked, offset)) if ranked else []
    return Leaderboard(window=info, board=board, platform=platform,
                       page=Page(offset=offset, limit=limit, total=total), entries=entries)


def _board_entries(layout: KeyLayout, window_id: str, ranked: list[tuple[str, float]],
                   offset: int) -> Plan[list[BoardEntry]]:
    users = [u for u, _ in ranked]
    score_key, clean_key = layout.score_board(window_id), layout.clean_board(window_id)
    replies = yield [cmd("zmscore", score_key, users), cmd("zmscore", clean_key, users),
                     cmd("zmscore", layout.flagged(window_id), users),
                     *(cmd("zrevrank", score_key, u) for u in users), *(cmd("zrevrank", clean_key, u) for u in users)]
    scores, cleans, flag_scores = replies[:3]
    score_ranks, clean_ranks = replies[3:3 + len(users)], replies[3 + len(users):]
    return [BoardEntry(rank=offset + i + 1, user=u, value=value, score=scores[i], clean_score=cleans[i],
                       gap=_gap(scores[i], cleans[i]), score_rank=_rank(score_ranks[i]),
                       clean_rank=_rank(clean_ranks[i]), flag_score=flag_scores[i])
            for i, (u, value) in enumerate(ranked)]


def _gap(score: float | None, clean: float | None) -> float | None:
    return None if score is None or clean is None else score - clean


def _rank(zero_based: int | None) -> int | None:
    return None if zero_based is None else zero_based + 1


# --- flags and groups -----------------------------------------------------------------------------


def flagged(layout: KeyLayout, window_ref: str, detector: str | None = None, offset: int = 0,
            limit: int = 20) -> Plan[FlaggedList]:
    """Flagged users, highest flag score first, with the reasons of their flags of this window.

    Reasons live per user (`user:{u}:flags`, newest flag per detector, for the flag TTL), so a flag
    of an older window may since have been replaced by a newer one; only this window's are listed.
    """
    check_choice(detector, DETECTORS, "detector")
    check_page(offset, limit)
    window_id, info, ranked, total = yield from _ranked_page(
        layout, window_ref, lambda w: layout.flagged(w, detector), offset, limit)
    safe = [u for u, _ in ranked if _is_safe_id(u)]
    replies = (yield [cmd("hgetall", layout.user_flags(u)) for u in safe]) if safe else []
    stored = dict(zip(safe, replies, strict=True))
    entries = [FlaggedEntry(user=u, score=score, flags=_window_flags(u, stored.get(u, {}), window_id, detector))
               for u, score in ranked]
    return FlaggedList(window=info, detector=detector, page=Page(offset=offset, limit=limit, total=total),
                       entries=entries)


def _ranked_page(layout: KeyLayout, window_ref: str, key_of: Callable[[str], str], offset: int,
                 limit: int) -> Plan[tuple[str, WindowInfo, list[tuple[str, float]], int]]:
    """(window id, its info, one page of a per-window sorted set, the set's size): one round trip."""
    window_id = yield from resolve_window(layout, window_ref)
    key = key_of(window_id)
    end, meta, ranked, total = yield [*window_header(layout, window_id),
                                      cmd("zrevrange", key, offset, offset + limit - 1, withscores=True),
                                      cmd("zcard", key)]
    return window_id, window_info(window_id, end, meta), ranked, total


def _window_flags(user_id: str, stored: dict[str, str], window_id: str, detector: str | None) -> list[Flag]:
    return [flag for flag in _flags(user_id, stored)
            if flag.window == window_id and (detector is None or flag.detector == detector)]


def groups(layout: KeyLayout, window_ref: str, offset: int = 0, limit: int = 20) -> Plan[GroupList]:
    """A window's coordination groups, largest first, each with its record."""
    check_page(offset, limit)
    _, info, ranked, total = yield from _ranked_page(layout, window_ref, layout.groups, offset, limit)
    safe = [g for g, _ in ranked if _is_safe_id(g)]
    records = (yield [cmd("get", layout.group(g)) for g in safe]) if safe else []
    stored = dict(zip(safe, records, strict=True))
    entries = [GroupEntry(id=g, size=int(size), group=_group(stored.get(g), g)) for g, size in ranked]
    return GroupList(window=info, page=Page(offset=offset, limit=limit, total=total), groups=entries)


def _is_safe_id(stored_id: str) -> bool:
    """A stored user or group id that could not form a layout key is listed, but never looked up."""
    try:
        check_id(stored_id)
    except InvalidInput:
        return False
    return True


def _group(raw: str | None, group_id: str) -> Group | None:
    return parse(Group, raw, f"group {group_id}") if raw is not None else None


def group(layout: KeyLayout, group_id: str) -> Plan[Group]:
    check_id(group_id, "group")
    (raw,) = yield [cmd("get", layout.group(group_id))]
    if raw is None:
        raise NotFound(f"no group {group_id}")
    return parse(Group, raw, f"group {group_id}")

