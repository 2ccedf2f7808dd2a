"""When `clout run --flink` takes a job for one that started stuck: the decision alone (the cancel,
against the real cluster, is in test_flink_stack.py)."""

from __future__ import annotations

from clout.local.flink import started_stuck

IDLE = [{"name": "Impulse", "status": "RUNNING", "read": 0, "written": 0},
        {"name": "Decode", "status": "RUNNING", "read": 0, "written": 0}]
MOVING = [{"name": "Impulse", "status": "RUNNING", "read": 0, "written": 12},
          {"name": "Decode", "status": "RUNNING", "read": 12, "written": 0}]


def test_a_job_that_reads_nothing_with_records_waiting_is_stuck_once_the_wait_is_over() -> None:
    assert started_stuck(IDLE, backlog=500, running_for_s=61, after_s=60)
    assert not started_stuck(IDLE, backlog=500, running_for_s=30, after_s=60)


def test_a_job_with_nothing_to_read_is_not_stuck() -> None:
    """A live run started at the topic's end waits for records: that is not a stuck start."""
    assert not started_stuck(IDLE, backlog=0, running_for_s=600, after_s=60)


def test_a_job_that_moved_a_record_is_not_stuck() -> None:
    assert not started_stuck(MOVING, backlog=500, running_for_s=600, after_s=60)


def test_a_job_whose_vertices_are_not_listed_yet_is_not_stuck() -> None:
    assert not started_stuck([], backlog=500, running_for_s=600, after_s=60)


def test_metrics_not_reported_yet_count_as_nothing_moved() -> None:
    unreported = [{"name": "Impulse", "status": "RUNNING", "read": None, "written": None}]
    assert started_stuck(unreported, backlog=1, running_for_s=60, after_s=60)
