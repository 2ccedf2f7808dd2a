"""Fault injection in CI: the matrix of bench/faults.py, smaller (a slice of real Higgs, one trial of
each fault, three pipeline kills in one trial). Real `clout ingest` and `clout run` processes against
a broker and a Redis of the harness's own, which it kills, pauses and restarts; after every fault
Redis must equal the independent recount of the topic, nothing valid may be missing, and the
consumer lag must be back to zero."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trials
from harness import HIGGS, FaultStack, Ports, fault_stack, higgs_slice, write_slice
from recount import recount

pytestmark = pytest.mark.servers
EVENTS = 5_000  # the first 5,000 Higgs events: 29 hours, 119 windows; 10 s of paced ingest


@pytest.fixture(scope="module")
def stack() -> Iterator[FaultStack]:
    if not HIGGS.exists():
        pytest.fail(f"the real Higgs dataset is missing at {HIGGS}; see README 'Real data'")
    root = Path(__file__).resolve().parent.parent.parent
    with fault_stack(Ports.for_tests(), root / ".state" / "faults-test") as running:
        yield running


@pytest.fixture(scope="module")
def data(stack: FaultStack) -> tuple[Path, int]:
    path = write_slice(stack.state_dir / "higgs-slice.txt", EVENTS)
    return path, len(recount(higgs_slice(EVENTS)))


def run(fault: trials.Fault, stack: FaultStack, data: tuple[Path, int], seed: int, **options: int) -> None:
    outcome = fault(stack, data[0], random.Random(seed), data[1], **options)
    print(outcome.line())
    assert outcome.problems == []
    assert outcome.lost == 0
    assert outcome.survived


def test_broker_sigkill_mid_replay_back_after_10_s(stack: FaultStack, data: tuple[Path, int]) -> None:
    run(trials.broker_sigkill, stack, data, seed=1)


def test_broker_clean_restart(stack: FaultStack, data: tuple[Path, int]) -> None:
    run(trials.broker_restart, stack, data, seed=2)


def test_redis_sigkill_is_rebuilt_by_a_restart(stack: FaultStack, data: tuple[Path, int]) -> None:
    run(trials.redis_sigkill, stack, data, seed=3)


def test_redis_client_pause_and_debug_sleep(stack: FaultStack, data: tuple[Path, int]) -> None:
    run(trials.redis_stalls, stack, data, seed=4)


def test_pipeline_sigkill_three_times(stack: FaultStack, data: tuple[Path, int]) -> None:
    run(trials.pipeline_sigkills, stack, data, seed=5, kills=3)


def test_slow_lossy_link_to_the_broker(stack: FaultStack, data: tuple[Path, int]) -> None:
    run(trials.lossy_link, stack, data, seed=6)


def test_broker_gone_for_good_during_ingest_ends_in_a_clear_error(stack: FaultStack, data: tuple[Path, int]) -> None:
    """Was a hang (README "Failure behaviour"): paced and unpaced `clout ingest` give up after the
    stall limit (here 10 + 30 s) with exit 2 and one line; what they say was delivered is in the topic."""
    run(trials.ingest_broker_gone, stack, data, seed=7, delivery_timeout_s=10)


def test_a_pipeline_with_scripts_survives_a_redis_restart_while_in_flight(stack: FaultStack) -> None:
    """Regression: a write in flight when Redis was killed was retried on the restarted Redis, whose
    script cache is empty: NoScriptError failed the bundle, and the job."""
    import threading
    import time

    from clout.store.client import RedisTarget

    client = RedisTarget(stack.redis.url).connect()
    script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("DEBUG", "SLEEP", 1)  # the server holds the pipeline while Redis is killed
    script(keys=["fault:script"], args=["written"], client=pipe)

    def restart() -> None:
        time.sleep(0.3)
        stack.redis.kill()
        stack.redis.start()

    killer = threading.Thread(target=restart)
    killer.start()
    pipe.execute()
    killer.join()
    assert client.get("fault:script") == b"written"
    client.delete("fault:script")
    client.close()
