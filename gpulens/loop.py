"""THE background loop: run a step every interval, back off on failure, log once per state change, never die.

Every background thread in gpulens (NVML sampler, event watcher, kubelet and Kubernetes refreshers,
model-server scrapers, probes, the log shipper) is one `Loop`. A step returns normally on success
and raises on failure; the loop then waits a capped exponential backoff with jitter instead of the
interval, and logs only when the outcome changes (one line for an outage, one for the recovery).
An unexpected exception is a failure like any other: the thread keeps running, and `alive`/`healthy`
let /readyz say so.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpulens.logs import StateLog


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter on the upper half: base·2^n, at most `cap`."""

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.5  # fraction of each delay that is randomised, so a fleet does not retry in step

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        if failures <= 0:
            return 0.0
        full = min(self.cap, self.base * 2 ** min(failures - 1, 62))
        return full * (1 - self.jitter) + full * self.jitter * rand()


class Loop:
    """Call `step()` every `interval` seconds on a daemon thread until `stop()`.

    `step` raising is a failure: logged once per distinct reason (the exception's class and first
    line), then retried after `backoff.delay(consecutive failures)`. A step may also return False: a
    failure it has logged itself (backed off, not logged again). `on_state(ok)` is called on each
    change, for an `_up` gauge. `jitter` spreads the interval itself (fraction of it, ±).
    `fixed_rate` starts steps every `interval` (the step's own time included) instead of
    waiting `interval` after each, and never bursts to catch up after a slow step.
    """

    def __init__(self, name: str, step: Callable[[], object], interval: float, log: logging.Logger,
                 backoff: Backoff | None = None, jitter: float = 0.0,
                 on_state: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, fixed_rate: bool = False):
        self.name = name
        self.interval = interval
        self.backoff = backoff or Backoff(base=max(interval, 0.1), cap=max(60.0, interval))
        self.failures = 0
        self.last_success: float | None = None  # wall-clock seconds of the last successful step
        self.last_error = ""
        self._step: Callable[[], object] = step
        self._fixed_rate = fixed_rate
        self._jitter = jitter
        self._on_state = on_state
        self._clock = clock
        self._state = StateLog(log, name)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Loop:
        self._thread = threading.Thread(target=self._run, name=f"gpulens-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def trigger(self) -> None:
        """Run the next step now (a watch event, a config reload) instead of at the next tick."""
        self._wake.set()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        """Running and its last step succeeded."""
        return self.alive and self.failures == 0 and self.last_success is not None

    def run_once(self) -> bool:
        """One step with the loop's bookkeeping; returns whether it succeeded (tests call this directly)."""
        try:
            outcome = self._step()
        except Exception as err:  # noqa: BLE001 - the loop must survive anything its step raises
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
            self.failures += 1
            self.last_error = reason
            self._state.failed(type(err).__name__, f"{self.name} failed: {reason}; retrying with backoff",
                               error={"type": type(err).__name__, "message": str(err)[:500]})
            if self.failures == 1 and self._on_state is not None:
                self._on_state(False)
            return False
        if outcome is False:  # a failure the step reported (and logged) itself
            self.failures += 1
            if self.failures == 1 and self._on_state is not None:
                self._on_state(False)
            return False
        was_failing = self.failures > 0 or self.last_success is None
        self.failures = 0
        self.last_error = ""
        self.last_success = time.time()
        self._state.ok(f"{self.name} ok")
        if was_failing and self._on_state is not None:
            self._on_state(True)
        return True

    def next_delay(self) -> float:
        if self.failures:
            return self.backoff.delay(self.failures)
        spread = self.interval * self._jitter
        return max(0.0, self.interval + random.uniform(-spread, spread))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            self.run_once()
            delay = self.next_delay()
            if self._fixed_rate and not self.failures:
                delay = max(0.0, delay - (self._clock() - started))
            self._wake.wait(delay)
            self._wake.clear()
