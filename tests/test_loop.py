"""The shared background Loop: never dies, backs off, logs once per state change, wakes on trigger."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from gpulens.loop import Backoff, Loop


def test_failures_back_off_and_log_once_per_state(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = iter([RuntimeError("down"), RuntimeError("down"), None, False, None])
    states: list[bool] = []

    def step() -> object:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    loop = Loop("thing", step, 1.0, logging.getLogger("t"), backoff=Backoff(base=2.0, cap=8.0, jitter=0.0), on_state=states.append)
    with caplog.at_level(logging.INFO, logger="t"):
        assert loop.run_once() is False
        assert loop.next_delay() == 2.0
        assert loop.run_once() is False
        assert loop.next_delay() == 4.0  # capped exponential
        assert loop.run_once() is True and loop.next_delay() == 1.0
        assert loop.run_once() is False  # a step reporting its own failure: counted, backed off, not logged again
        assert loop.failures == 1
        assert loop.run_once() is True
    assert [r.getMessage() for r in caplog.records] == ["thing failed: RuntimeError: down; retrying with backoff", "thing ok"]
    assert states == [False, True, False, True]


def test_thread_survives_anything_and_trigger_wakes_it() -> None:
    calls: list[float] = []
    ran = threading.Event()

    def step() -> None:
        calls.append(time.monotonic())
        ran.set()
        if len(calls) == 1:
            raise KeyError("bug")

    loop = Loop("t", step, 3600.0, logging.getLogger("t"), backoff=Backoff(base=3600.0, cap=3600.0)).start()
    try:
        assert ran.wait(5)
        ran.clear()
        loop.trigger()  # instead of waiting out the hour-long backoff
        assert ran.wait(5)
        assert loop.alive and loop.healthy
    finally:
        loop.stop()
    assert not loop.alive


def test_fixed_rate_counts_the_step_time() -> None:
    clock = [0.0]
    loop = Loop("t", lambda: None, 1.0, logging.getLogger("t"), clock=lambda: clock[0], fixed_rate=True)
    assert loop.next_delay() == 1.0
