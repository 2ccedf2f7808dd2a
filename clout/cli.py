"""`clout`: the one command-line tool. Subcommands follow the data: stack, topics, ingest, run, query, serve."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from clout.settings import Secret, Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]

# Flags shared by every subcommand, mapped onto Settings fields.
_SETTING_FLAGS = {
    "bootstrap": "kafka_bootstrap",
    "topic": "topic",
    "dlq_topic": "dlq_topic",
    "group": "group",
    "redis_url": "redis_url",
    "kafka_port": "kafka_port",
    "redis_port": "redis_port",
    "state_dir": "state_dir",
}


# Commands that talk to Kafka first check that it takes their credentials (clout/connectors/access.py).
_KAFKA_COMMANDS = frozenset({"topics", "ingest", "run"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        settings = load_settings(args.config, _overrides(args))
        if args.command in _KAFKA_COMMANDS:
            from clout.connectors.access import check_kafka_access

            check_kafka_access(settings)  # a refused login fails here, at once, with the reason
        return args.handler(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as error:
        print(f"clout: error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection settings (also CLOUT_* variables or --config FILE)")
    group.add_argument("--config", help="TOML file of settings (names as in `clout config`)")
    group.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    group.add_argument("--topic", help="interactions topic")
    group.add_argument("--dlq-topic", help="dead-letter topic")
    group.add_argument("--group", help="consumer group of the pipeline")
    group.add_argument("--redis-url", help="redis://[user:password@]host:port/db (rediss:// for TLS; "
                       "redis+cluster://host:port for a Redis Cluster)")
    group.add_argument("--kafka-port", type=int, help="local stack: Kafka port")
    group.add_argument("--redis-port", type=int, help="local stack: Redis port")
    group.add_argument("--state-dir", help="local stack: data, logs and pid files")

    parser = argparse.ArgumentParser(prog="clout", description=__doc__, parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_stack(commands, common)
    _add_topics(commands, common)
    _add_ingest(commands, common)
    _add_config(commands, common)
    _add_pipeline_commands(commands, common)
    _add_serve_command(commands, common)
    _add_demo(commands, common)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {field: getattr(args, flag, None) for flag, field in _SETTING_FLAGS.items()}
    return {field: value for field, value in values.items() if value is not None}


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=_json_default).decode() + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Secret):
        return repr(value).strip("'")
    return str(value)


# --- stack ----------------------------------------------------------------------------------------


def _add_stack(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    stack = commands.add_parser("stack", parents=[common], help="the local Kafka + Redis (+ Prism) stack")
    stack.add_argument("action", choices=["install", "up", "down", "status"])
    stack.add_argument("--flink", action="store_true",
                       help="also a Flink session cluster, Beam's job server and a Python worker pool")
    stack.set_defaults(handler=_stack)


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from clout.local import stack

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    if args.action == "install":
        stack.install_all(settings, say, flink=args.flink)
    elif args.action == "up":
        stack.up(settings, say, flink=args.flink)
        from clout.connectors.topics import create_topics

        for topic, outcome in create_topics(settings).items():  # a ready stack: ingest can start at once
            say(f"topic {topic}: {outcome}")
    elif args.action == "down":
        stack.down(settings, say, flink=args.flink)
    else:
        report = stack.status(settings, flink=args.flink)
        _print_json(report)
        return 0 if all(s["answers"] for s in report.values()) else 1
    return 0


# --- topics ---------------------------------------------------------------------------------------


def _add_topics(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    topics = commands.add_parser("topics", parents=[common], help="create the interactions topic and its DLQ")
    topics.add_argument("action", choices=["create"])
    topics.add_argument("--partitions", type=int, help="partitions of the interactions topic (default 6)")
    topics.set_defaults(handler=_topics)


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from clout.connectors.topics import create_topics

    _print_json(create_topics(settings, args.partitions))
    return 0


# --- ingest ---------------------------------------------------------------------------------------


def _add_ingest(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ingest = commands.add_parser("ingest", help="publish a source into Kafka")
    sources = ingest.add_subparsers(dest="source", required=True)
    pacing = argparse.ArgumentParser(add_help=False)
    pacing.add_argument("--speed", default="max", help="'max' (default) or N: replay event time at N x real time")
    pacing.add_argument("--rate", type=float, help="cap the publish rate at N events/s")
    pacing.add_argument("--rebase-time", action="store_true", help="shift timestamps so the first event is now")

    file = sources.add_parser("file", parents=[common, pacing], help="replay a file (.gz read transparently)")
    file.add_argument("path")
    file.add_argument("--format", required=True, choices=["snap-higgs", "snap-temporal", "csv", "jsonl"])
    file.add_argument("--platform", help="platform name stamped on events (default per format)")
    file.add_argument("--csv-columns", help="column names of a headerless CSV, comma separated")
    file.add_argument("--csv-map", default="actor=source,target=target,ts=time",
                      help="event field=column pairs: actor, target, ts, kind (default %(default)s)")
    file.add_argument("--csv-kind", default="message", help="kind when no column is mapped (default message)")
    file.add_argument("--csv-ts-unit", choices=["s", "ms"], default="s")
    file.set_defaults(handler=_ingest_file)

    synthetic = sources.add_parser("synthetic", parents=[common, pacing],
                                   help="realistic generated activity with planted anomalies")
    synthetic.add_argument("--users", type=int, default=10_000)
    synthetic.add_argument("--events", type=int, default=200_000)
    synthetic.add_argument("--seed", type=int, default=7)
    synthetic.add_argument("--truth", help="write the planted anomalies' ground truth to this JSON file")
    synthetic.add_argument("--ending-now", action="store_true",
                           help="place the stream's days of event time so they end now (brokers refuse records "
                                "more than an hour in the future, so a live replay must not run ahead of the clock)")
    synthetic.set_defaults(handler=_ingest_synthetic)
    _add_live_sources(sources, common)


def _publisher(settings: Settings) -> Any:
    """A Publisher, once both topics are known to exist (else a clear error at once)."""
    from clout.connectors.publisher import Publisher
    from clout.connectors.topics import require_topics

    require_topics(settings)
    return Publisher(settings)


def _add_live_sources(sources: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    live = argparse.ArgumentParser(add_help=False)
    live.add_argument("--stop-when-idle", type=float, metavar="SECONDS",
                      help="exit after this long without a frame (replays, tests; default: run until Ctrl-C)")
    live.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS",
                      help="first reconnect wait; doubles, with full jitter, up to 60 s (default 1)")
    bluesky = sources.add_parser("bluesky", parents=[common, live], help="Bluesky's firehose (Jetstream v1)")
    bluesky.add_argument("--url", help="Jetstream /subscribe URL (default: the public instance)")
    bluesky.add_argument("--cursor", type=int, metavar="TIME_US",
                         help="start at this time_us (default: the stored cursor, else live)")
    bluesky.add_argument("--collections", help="wantedCollections, comma separated (default: all)")
    bluesky.add_argument("--zstd-dictionary", metavar="PATH",
                         help="ask for zstd-compressed frames and decode them with Jetstream's dictionary")
    bluesky.set_defaults(handler=_ingest_bluesky)
    mastodon = sources.add_parser("mastodon", parents=[common, live], help="a Mastodon instance's streaming API "
                                  "(token: CLOUT_MASTODON_ACCESS_TOKEN or mastodon_access_token in --config)")
    mastodon.add_argument("--instance", required=True, help="instance URL, e.g. https://mastodon.social")
    mastodon.add_argument("--streaming-url", help="streaming server, if not the instance (see /api/v1/instance)")
    mastodon.add_argument("--stream", choices=["public", "user:notification"], default="public")
    mastodon.add_argument("--transport", choices=["sse", "websocket"], default="sse")
    mastodon.set_defaults(handler=_ingest_mastodon)


def _live_options(args: argparse.Namespace) -> Any:
    from clout.connectors.live import LiveOptions

    return LiveOptions(stop_when_idle_s=args.stop_when_idle, backoff_base_s=args.backoff)


def _ingest_bluesky(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from clout.connectors.bluesky import DEFAULT_URL, JetstreamConnector, JetstreamOptions, cursor_store

    url = args.url or DEFAULT_URL
    options = JetstreamOptions(url=url, cursor=args.cursor, live=_live_options(args),
                               collections=tuple(c for c in (args.collections or "").split(",") if c),
                               zstd_dictionary=Path(args.zstd_dictionary) if args.zstd_dictionary else None)
    with _publisher(settings) as publisher:
        summary = JetstreamConnector(publisher, cursor_store(settings.state_dir, url), options).run()
    _print_json(summary)
    return 0


def _ingest_mastodon(args: argparse.Namespace, settings: Settings) -> int:
    from clout.connectors.mastodon import MastodonConnector, MastodonOptions

    options = MastodonOptions(instance=args.instance, streaming_url=args.streaming_url, stream=args.stream,
                              transport=args.transport, live=_live_options(args))
    with _publisher(settings) as publisher:
        summary = MastodonConnector(publisher, settings.mastodon_access_token, options).run()
    _print_json(summary)
    return 0


def _pacing(args: argparse.Namespace) -> Any:
    from clout.connectors.replay import Pacing

    speed = None if args.speed == "max" else float(args.speed)
    if speed is not None and speed <= 0:
        raise ValueError("--speed must be 'max' or a positive number")
    return Pacing(speed=speed, rate=args.rate, rebase=args.rebase_time)


def _ingest_file(args: argparse.Namespace, settings: Settings) -> int:
    from clout.connectors.file import CsvMapping, read_source
    from clout.connectors.replay import replay

    mapping = None
    if args.format == "csv":
        fields = dict(pair.split("=", 1) for pair in args.csv_map.split(","))
        mapping = CsvMapping(actor=fields.get("actor", "source"), target=fields.get("target", "target"),
                             ts=fields.get("ts", "time"), kind=fields.get("kind"), constant_kind=args.csv_kind,
                             ts_unit=args.csv_ts_unit,
                             columns=args.csv_columns.split(",") if args.csv_columns else None)
    lines = read_source(args.path, args.format, args.platform, mapping)
    with _publisher(settings) as publisher:
        summary = replay(lines, publisher, args.path, _pacing(args))
    _print_json(summary.as_dict())
    return 0


def _ingest_synthetic(args: argparse.Namespace, settings: Settings) -> int:
    from clout.connectors.replay import events_as_lines, replay
    from clout.connectors.synthetic import SyntheticConfig, SyntheticStream, write_truth

    config = SyntheticConfig(users=args.users, events=args.events, seed=args.seed)
    if args.ending_now:
        now_ms = int(time.time()) * 1000
        config = dataclasses.replace(config, start_ms=now_ms - now_ms % 60_000 - int(config.days * 86_400_000))
    stream = SyntheticStream(config)
    if args.truth:
        write_truth(stream.truth, args.truth)
    with _publisher(settings) as publisher:
        summary = replay(events_as_lines(stream), publisher, f"synthetic(seed={args.seed})", _pacing(args))
    _print_json(summary.as_dict())
    return 0


# --- config ---------------------------------------------------------------------------------------


def _add_config(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    config = commands.add_parser("config", parents=[common], help="print the effective settings (secrets redacted)")
    config.set_defaults(handler=lambda _args, settings: _print_json(settings.redacted()) or 0)


def _add_pipeline_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`run` and `query` live with the pipeline."""
    from clout.pipelines.command import add_commands

    add_commands(commands, common)
    run = commands.choices["run"]
    run.add_argument("--flink", action="store_true",
                     help="submit to the local stack's Flink cluster (`clout stack up --flink`), parallelism 2")
    run.set_defaults(handler=_on_flink_if_asked(run.get_default("handler")))


def _on_flink_if_asked(handler: Handler) -> Handler:
    """`clout run --flink`: the local cluster's Beam options first, so any --option given after them
    wins; a job that starts stuck (flink.StartWatch) is cancelled and submitted again."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        if not args.flink:
            return handler(args, settings)
        from clout.local.flink import START_ATTEMPTS, require_running

        require_running(settings)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return _run_on_flink(handler, args, settings)
            except _StuckStart:
                # Resumed from the plan the stuck job recorded: a --reset again would skip what came since.
                args = argparse.Namespace(**{**vars(args), "reset": False})
                print(f"clout run: submitting again (attempt {attempt + 1} of {START_ATTEMPTS})"
                      if attempt < START_ATTEMPTS else "clout run: every attempt started stuck",
                      file=sys.stderr, flush=True)
        raise SystemExit(f"clout run: the Flink job read nothing in {START_ATTEMPTS} starts; see the "
                         "TaskManager's log in the stack's state directory")

    return run


class _StuckStart(Exception):
    """The Flink job was cancelled by its start watch."""


def _run_on_flink(handler: Handler, args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    from clout.local.flink import DrainWhenRead, StartWatch, flink_beam_args

    job_name = f"clout-{settings.group}-{uuid.uuid4().hex[:8]}"
    watch = StartWatch(settings, job_name)
    attempt = argparse.Namespace(**vars(args))
    attempt.extra = [*flink_beam_args(settings, job_name), *args.extra]
    attempt.on_plan = lambda plan: watch.begin(plan.start_offsets)
    drain = DrainWhenRead(settings, job_name, args.stop_when_idle) if args.stop_when_idle is not None else None
    if drain:
        drain.start()
    try:
        return handler(attempt, settings)
    except RuntimeError:
        if watch.cancelled.is_set():
            raise _StuckStart() from None
        raise
    finally:
        watch.stop()
        if drain:
            drain.stop()


def _add_serve_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`serve` lives with the read API."""
    from clout.serving.command import add_commands

    add_commands(commands, common)


def _add_demo(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("demo", parents=[common], help="the whole path live: stack, pipeline, dashboard, "
                                 "synthetic stream with planted anomalies (Ctrl-C stops it all)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--speed", type=float, default=120.0, help="event time runs at N x real time (default 120)")
    parser.add_argument("--port", type=int, default=8000, help="dashboard and API port (default 8000)")
    parser.add_argument("--linger", type=float, help="exit this many seconds after the stream ends")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from clout.local.demo import DemoOptions, run_demo

    options = DemoOptions(users=args.users, events=args.events, speed=args.speed, port=args.port,
                          linger_s=args.linger)
    return run_demo(settings, options)


if __name__ == "__main__":
    sys.exit(main())
