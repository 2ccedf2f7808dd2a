"""`clout run` (the streaming job) and `clout query` (read results back as JSON).

Beam is imported only when `run` runs, and Redis only when `query` does, so the other commands start
quickly (tests/test_cli_imports.py keeps it so).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from clout.anomalies.flag import DETECTORS
from clout.settings import Settings
from clout.store.layout import KeyLayout


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    _add_run(commands, common)
    _add_query(commands, common)
    _add_eval(commands)


def _add_eval(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval", add_help=False, help="evaluate the anomaly detectors (planted anomalies in real Higgs; Bitcoin OTC)",
        description="Options (see `clout eval --help`) go to the evaluation.")
    parser.set_defaults(handler=_eval, accepts_extra=True)


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from clout.evaluation import main

    return main(list(args.extra))


def _add_run(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "run", parents=[common], help="run the streaming pipeline (Kafka -> Beam -> Redis)",
        epilog="Unrecognised --options are passed to Beam, e.g. --runner=FlinkRunner --flink_master=host:8081.")
    parser.add_argument("--window", type=int, default=3600, help="window size in seconds (default 3600)")
    parser.add_argument("--period", type=int, default=900, help="window period in seconds; = window for fixed")
    parser.add_argument("--lateness", type=int, default=600, help="allowed lateness in seconds (default 600)")
    parser.add_argument("--shards", type=int, default=4,
                        help="account shards: the per-account detectors and the totals spread over this many keys")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="a new group starts at the earliest offsets")
    start.add_argument("--from-latest", action="store_true", help="a new group starts at the end (default)")
    parser.add_argument("--reset", action="store_true", help="forget the group's progress and start over")
    parser.add_argument("--stop-when-idle", type=float, metavar="SECONDS",
                        help="finish once every partition has been at its end this long")
    parser.add_argument("--out-of-orderness", type=float, default=30.0, help="watermark bound in seconds")
    parser.add_argument("--idle-after", type=float, default=10.0,
                        help="seconds before an idle partition stops holding the watermark back")
    parser.add_argument("--dedup-horizon", type=float, default=3600.0,
                        help="seconds of event time within which a repeated event_id is dropped")
    parser.add_argument("--read-ahead", type=float, default=21600.0, metavar="SECONDS",
                        help="seconds of event time a reader may get ahead of the results already final "
                             "(bounds a replay's memory; 0: no bound; default 21600)")
    parser.set_defaults(handler=_run, accepts_extra=True)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    _silence_beam_import_noise()
    from clout.model.windows import WindowPolicy
    from clout.pipelines.run import RunConfig, run

    config = RunConfig(
        policy=WindowPolicy(args.window, args.period, args.lateness),
        shards=args.shards, from_beginning=args.from_beginning, reset=args.reset,
        stop_when_idle_s=args.stop_when_idle, out_of_orderness_s=args.out_of_orderness,
        idle_after_s=args.idle_after, dedup_horizon_s=args.dedup_horizon, read_ahead_s=args.read_ahead,
        beam_args=tuple(args.extra))
    run(settings, config, on_plan=getattr(args, "on_plan", None))
    return 0


def _silence_beam_import_noise() -> None:
    """Beam's BigQuery client package logs "apitools not found" on the root logger at import time on
    any machine without Google's client libraries; clout uses no BigQuery, so that line is noise."""
    import logging

    logging.getLogger().addFilter(lambda record: not str(record.msg).startswith("apitools not found"))


def _add_query(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("query", parents=[common], help="read results from Redis as JSON")
    what = parser.add_subparsers(dest="what", required=True)
    windows = what.add_parser("windows", parents=[common], help="the most recent windows")
    windows.add_argument("--last", type=int, default=10)
    user = what.add_parser("user", parents=[common], help="one user's activity in a window (default: latest)")
    user.add_argument("user")
    user.add_argument("--window", help="window id <start>-<end> (epoch seconds)")
    top = what.add_parser("top", parents=[common], help="a window's leaderboard (default: latest window)")
    top.add_argument("--window")
    top.add_argument("--metric", choices=["received", "engagers", "score", "clean"], default="received")
    top.add_argument("--platform", help="with --metric score: one platform's leaderboard")
    top.add_argument("--limit", type=int, default=10)
    score = what.add_parser("score", parents=[common], help="one user's influence: latest window, long-term, history")
    score.add_argument("user")
    flags = what.add_parser("flags", parents=[common], help="flagged users with reasons (one window or all)")
    flags.add_argument("--window", help="window id (default: every window in Redis, newest first)")
    flags.add_argument("--detector", choices=DETECTORS)
    flags.add_argument("--limit", type=int, default=50, help="flags at most")
    parser.set_defaults(handler=_query)
    for sub in (windows, user, top, score, flags):
        sub.set_defaults(handler=_query)


def _query(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from redis.exceptions import ConnectionError as RedisConnectionError

    from clout.store.client import RedisTarget

    # One quick retry: a person at a prompt wants "Redis is not there" now, not after a minute of backoff.
    client = dataclasses.replace(RedisTarget.from_settings(settings), retries=1).connect()
    layout = KeyLayout(settings.key_prefix)
    try:
        result = QUERIES[args.what](client, layout, args)
    except RedisConnectionError as error:
        raise RuntimeError(f"cannot reach Redis at {settings.redacted()['redis_url']} ({error}); "
                           "for the local stack: `clout stack up`") from None
    finally:
        client.close()
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if result is not None else 1


def _windows(client: Any, layout: KeyLayout, args: argparse.Namespace) -> list[str]:
    return [w.decode() for w in client.zrevrange(layout.windows(), 0, args.last - 1)]


def _latest_window(client: Any, layout: KeyLayout) -> str:
    newest = client.zrevrange(layout.windows(), 0, 0)
    if not newest:
        raise ValueError("no windows in Redis yet (is `clout run` running?)")
    return newest[0].decode()


def _user(client: Any, layout: KeyLayout, args: argparse.Namespace) -> dict[str, Any] | None:
    window = args.window or _latest_window(client, layout)
    value = client.hget(layout.activity(window), args.user)
    return {"user": args.user, "window": window, **orjson.loads(value)} if value else None


def _top(client: Any, layout: KeyLayout, args: argparse.Namespace) -> dict[str, Any]:
    scored = client.zrevrange(layout.scored_windows(), 0, 0) if args.metric in ("score", "clean") else []
    window = args.window or (scored[0].decode() if scored else _latest_window(client, layout))
    key = (layout.score_board(window, args.platform) if args.metric == "score"
           else layout.leaderboard(window, args.metric))
    ranked = client.zrevrange(key, 0, args.limit - 1, withscores=True)
    as_number = int if args.metric in ("received", "engagers") else (lambda s: round(s, 2))
    return {"window": window, "metric": args.metric,
            "top": [{"user": u.decode(), args.metric: as_number(s)} for u, s in ranked]}


def _score(client: Any, layout: KeyLayout, args: argparse.Namespace) -> dict[str, Any] | None:
    latest = client.get(layout.user_latest(args.user))
    if latest is None:
        return None
    history = {w.decode(): orjson.loads(v) for w, v in client.hgetall(layout.user_history(args.user)).items()}
    return {"user": args.user, **orjson.loads(latest),
            "history": [{"window": w, **history[w]} for w in sorted(history, key=lambda w: history[w]["end"])]}


def _flags(client: Any, layout: KeyLayout, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Flagged users by score, newest window first, each with its reasons (the user's stored flag for
    that detector when it is this window's, else the window's score alone)."""
    windows = [args.window] if args.window else [w.decode() for w in client.zrevrange(layout.windows(), 0, -1)]
    detectors = [args.detector] if args.detector else list(DETECTORS)
    out: list[dict[str, Any]] = []
    for window in windows:
        for detector in detectors:
            for user, score in client.zrevrange(layout.flagged(window, detector), 0, -1, withscores=True):
                stored = client.hget(layout.user_flags(user.decode()), detector)
                flag = orjson.loads(stored) if stored else None
                if flag is None or flag["window"] != window:
                    flag = {"user": user.decode(), "window": window, "detector": detector, "score": score}
                out.append(flag)
                if len(out) >= args.limit:
                    return out
    return out


QUERIES = {"windows": _windows, "user": _user, "top": _top, "score": _score, "flags": _flags}
