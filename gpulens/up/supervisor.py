"""Child processes for `gpulens up`: start, health-check, restart with backoff, stop without orphans.

Each child runs in its own session (process group), so stopping it also stops whatever it spawned
(uvicorn workers, Prometheus' helpers); on Linux each child also gets PR_SET_PDEATHSIG, so a
`kill -9` of `gpulens up` itself still takes the children with it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpulens.loop import Backoff

STABLE_SECONDS = 30.0  # a child that ran this long before dying starts its backoff afresh
STOP_GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


# Resolved once here: the function below runs in the forked child before exec, where nothing that
# may take a lock (imports, find_library's subprocess) is safe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _pdeathsig() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its command line, where it logs, and the URL that answers 200 once it is healthy."""

    name: str
    argv: Sequence[str]
    health_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""  # what to show the user (a metrics endpoint or a UI)
    after: tuple[str, ...] = ()  # children that must be healthy before this one starts


@dataclass
class Child:
    spec: ChildSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs children, restarts any that exits (capped exponential backoff), stops them all on `stop()`."""

    def __init__(self, run_dir: Path, log: logging.Logger, backoff: Backoff | None = None,
                 say: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic):
        self.run_dir = run_dir
        self._log = log
        self._say = say
        self._clock = clock
        self._backoff = backoff or Backoff(base=1.0, cap=30.0)
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, spec: ChildSpec) -> Child:
        child = Child(spec, self.run_dir / f"{spec.name}.log")
        with self._lock:
            self.children[spec.name] = child
            self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        with open(child.log_path, "ab") as log:  # the child keeps its own descriptor
            child.proc = subprocess.Popen(
                list(child.spec.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **child.spec.env},
                start_new_session=True, preexec_fn=_pdeathsig, cwd=self.run_dir,
            )
        child.started = self._clock()
        child.restart_at = None
        self._log.info(f"started {child.spec.name} (pid {child.proc.pid})",
                       extra={"event": {"action": "child-started"}, "labels": {"child": child.spec.name, "pid": child.proc.pid}})

    def watch(self, interval: float = 0.5) -> None:
        """Start the thread that restarts exited children."""
        self._thread = threading.Thread(target=self._watch, args=(interval,), name="supervisor", daemon=True)
        self._thread.start()

    def _watch(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            with self._lock:
                for child in self.children.values():
                    if self._stopping.is_set():
                        break
                    try:
                        self.check(child)
                    except OSError as err:  # e.g. a failed re-spawn: try again at the next tick
                        child.restart_at = self._clock() + self._backoff.delay(child.failures)
                        self._say(f"!! could not restart {child.spec.name}: {err}")

    def check(self, child: Child) -> None:
        """One supervision step for one child: notice an exit, schedule the restart, restart when due."""
        now = self._clock()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
            return
        if child.proc is None or child.proc.poll() is None:
            return
        code = child.proc.returncode
        child.failures = 1 if now - child.started >= STABLE_SECONDS else child.failures + 1
        delay = self._backoff.delay(child.failures)
        child.restart_at = now + delay
        self._say(f"!! {child.spec.name} exited with code {code}; restarting in {delay:.1f}s (log: {child.log_path})")
        self._log.warning(f"{child.spec.name} exited with code {code}, restart in {delay:.1f}s",
                          extra={"event": {"action": "child-exited"}, "labels": {"child": child.spec.name, "exit_code": code}})

    def pids(self) -> list[int]:
        with self._lock:
            return [c.proc.pid for c in self.children.values() if c.proc is not None and c.proc.poll() is None]

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM every child's process group (newest first), wait, then SIGKILL what is left."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            children = [c for c in reversed(self.children.values()) if c.proc is not None]
        for child in children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            assert child.proc is not None
            try:
                code = child.proc.wait(max(0.0, deadline - time.monotonic()))
                self._log.info(f"{child.spec.name} stopped with code {code}",
                               extra={"event": {"action": "child-stopped"}, "labels": {"child": child.spec.name}})
            except subprocess.TimeoutExpired:
                self._say(f"!! {child.spec.name} did not stop within {timeout:.0f}s: killing it")
        for child in children:  # the group too: a helper the child spawned may outlive it
            _signal_group(child, signal.SIGKILL)
            assert child.proc is not None
            child.proc.wait()


def _signal_group(child: Child, sig: int) -> None:
    assert child.proc is not None
    try:
        os.killpg(child.proc.pid, sig)  # start_new_session: the child's pid is its group id
    except ProcessLookupError:
        pass
    except PermissionError:  # the group id was reused by someone else's process: signal ours only
        if child.proc.poll() is None:
            child.proc.send_signal(sig)


def healthy(url: str, timeout: float = 1.0) -> bool:
    """True if `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (OSError, ValueError):
        return False
