"""What Beam's worker threads print when the runner goes away, held back.

On Prism the Python worker runs in `clout run`'s own process, on a dozen threads that each hold a
gRPC stream to the runner. Whenever the runner's sockets close (every Ctrl-C, which the terminal
sends to Prism too; every planned stop, such as `clout demo`'s) each thread prints a traceback of
gRPC UNAVAILABLE or CANCELLED: about ninety lines that say nothing the run's own ending does not
("interrupted", or the error `wait_until_finish` raises when the runner really failed). Those
tracebacks are counted instead of printed, and the runner's own goodbye at exit ("Really destroying
service at ...", a warning on every run that ends) is dropped; anything else a thread or a Beam
logger reports still is.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc

_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def runner_gone(error: BaseException | None) -> bool:
    """Whether an error is a gRPC stream to the runner that closed."""
    return isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)) and error.code() in _GONE


def runner_stopped_at_exit(record: logging.LogRecord) -> bool:
    """Beam's atexit stop of the runner it started (Prism), which it logs as a warning every time."""
    return record.name == "apache_beam.utils.subprocess_server" and str(record.msg).startswith(
        "Really destroying service")


class RunnerGoneNoise(logging.Filter):
    """Drops log records and thread deaths caused by the runner's streams closing; counts them."""

    def __init__(self) -> None:
        super().__init__("clout.runner_gone")
        self.held = 0
        self._previous_hook = threading.excepthook

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and runner_gone(record.exc_info[1]):
            self.held += 1
            return False
        return not runner_stopped_at_exit(record)

    def excepthook(self, args: Any) -> None:
        if runner_gone(args.exc_value):
            self.held += 1
            return
        self._previous_hook(args)


_installed: RunnerGoneNoise | None = None


def hold_back_runner_gone_noise() -> RunnerGoneNoise:
    """Installs the filter for the rest of the process (the runner is torn down at exit, after any
    caller could uninstall it) on the root logger's handlers and as the threads' excepthook; once."""
    global _installed
    if _installed is None:
        _installed = RunnerGoneNoise()
        for handler in logging.getLogger().handlers or [logging.lastResort]:
            if handler is not None:
                handler.addFilter(_installed)
        threading.excepthook = _installed.excepthook
    return _installed
