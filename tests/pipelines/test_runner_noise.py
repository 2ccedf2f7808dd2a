"""Beam worker threads that lose the runner's streams are counted, not printed; other errors still print."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest

from clout.pipelines.runner_noise import RunnerGoneNoise, runner_gone


class StreamClosed(grpc.RpcError):
    """What a worker thread's gRPC stream raises when the runner goes (a _MultiThreadedRendezvous)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__()
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def die_in_a_thread(error: BaseException, hook: RunnerGoneNoise, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", hook.excepthook)

    def fail() -> None:
        raise error

    thread = threading.Thread(target=fail)
    thread.start()
    thread.join()


def test_only_closed_runner_streams_are_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner_gone(StreamClosed(grpc.StatusCode.UNAVAILABLE))
    assert runner_gone(StreamClosed(grpc.StatusCode.CANCELLED))
    assert not runner_gone(StreamClosed(grpc.StatusCode.INVALID_ARGUMENT))
    assert not runner_gone(ValueError("bad"))
    printed: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args.exc_value))
    noise = RunnerGoneNoise()
    die_in_a_thread(StreamClosed(grpc.StatusCode.UNAVAILABLE), noise, monkeypatch)
    die_in_a_thread(KeyError("a real bug"), noise, monkeypatch)
    assert noise.held == 1 and [type(e) for e in printed] == [KeyError]


def test_a_workers_log_record_of_a_closed_stream_is_dropped() -> None:
    noise = RunnerGoneNoise()

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord("apache_beam.runners.worker.data_plane", logging.ERROR, __file__, 1,
                                 "Failed to read inputs in the data plane.", None, (type(error), error, None))

    assert not noise.filter(record(StreamClosed(grpc.StatusCode.UNAVAILABLE)))
    assert noise.filter(record(RuntimeError("decode failed")))
    assert noise.held == 1


def test_the_runners_goodbye_at_exit_is_dropped_and_its_other_warnings_are_not() -> None:
    noise = RunnerGoneNoise()

    def record(msg: str, name: str = "apache_beam.utils.subprocess_server") -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

    assert not noise.filter(record("Really destroying service at %s with cmd: %s"))
    assert noise.filter(record("Could not close the gRPC channel started with cmd %s"))
    assert noise.filter(record("Really destroying service at %s", name="somebody.else"))
    assert noise.held == 0
