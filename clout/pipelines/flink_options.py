"""Flink's own Beam options, declared on the Python side so the portable runner passes them on.

The Python SDK drops options it does not know before submitting to a job server (only the uber-jar
path keeps unknown ones), and it knows none of Flink's checkpoint settings. Declaring them here makes
`--checkpointing_interval` and friends reach FlinkPipelineOptions on the job server, which is what
turns on Flink's checkpoints, and with them the source's checkpoint finalization (offset commits).
"""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions


class FlinkCheckpointOptions(PipelineOptions):
    """Names and meanings as in Beam's Java FlinkPipelineOptions."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--checkpointing_interval", type=int, default=None,
                            help="Flink: milliseconds between checkpoints (off when unset)")
        parser.add_argument("--checkpointing_mode", default=None, help="Flink: EXACTLY_ONCE or AT_LEAST_ONCE")
        parser.add_argument("--min_pause_between_checkpoints", type=int, default=None,
                            help="Flink: milliseconds between the end of one checkpoint and the next")
        parser.add_argument("--shutdown_sources_after_idle_ms", type=int, default=None,
                            help="Flink: shut finished sources down after this long (checkpoints stop then)")
        parser.add_argument("--savepoint_path", default=None, help="Flink: restore the job from this savepoint")
        parser.add_argument("--externalized_checkpoints_enabled", type=_flag, default=None,
                            help="Flink: keep checkpoints when the job is cancelled or fails")
        parser.add_argument("--retain_externalized_checkpoints_on_cancellation", type=_flag, default=None,
                            help="Flink: keep externalized checkpoints on cancel too")
        parser.add_argument("--fail_on_checkpointing_errors", type=_flag, default=None,
                            help="Flink: fail the job when a checkpoint fails")


def _flag(value: str) -> bool:
    return value.lower() in {"1", "true", "yes"}


DEFAULT_CHECKPOINTING_MS = 10_000


def with_flink_defaults(args: list[str]) -> list[str]:
    """Checkpoints on for a Flink job unless asked otherwise. Without them Beam's Flink runner shuts its
    Impulse source down at once, and the Kafka reader's pending resumptions go with it (nothing is read),
    and the source's checkpoints are never finalized (no offsets committed)."""
    on_flink = any(a in ("--runner=FlinkRunner", "--runner=flink") for a in args) or any(
        a.startswith("--flink_master") for a in args)
    if on_flink and not any(a.startswith("--checkpointing_interval") for a in args):
        return [*args, f"--checkpointing_interval={DEFAULT_CHECKPOINTING_MS}"]
    return args
