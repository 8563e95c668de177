"""The supervisor on real processes: restart with backoff, stop without orphans, children die with the parent."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from gpulens.loop import Backoff
from gpulens.up.supervisor import ChildSpec, Supervisor
from tests.tools import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
# A child that starts a grandchild in its own process group, as uvicorn or a shell pipeline would.
PARENT_OF_SLEEPER = [sys.executable, "-c", textwrap.dedent("""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    time.sleep(300)
""")]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_exited_child_is_restarted_with_backoff_and_logged(tmp_path: Path) -> None:
    said: list[str] = []
    sup = Supervisor(tmp_path, logging.getLogger("test"), backoff=Backoff(base=0.05, cap=0.2, jitter=0), say=said.append)
    child = sup.start(ChildSpec("crasher", [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"]))
    sup.watch(interval=0.02)
    try:
        wait_until(lambda: child.restarts >= 2)
    finally:
        sup.stop()
    assert any("crasher exited with code 3" in line for line in said)
    assert (tmp_path / "crasher.log").read_text().count("boom") >= 2  # each run appends to the same log
    assert child.failures >= 2  # quick deaths grow the backoff instead of resetting it


def test_stop_ends_children_and_their_process_groups(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, logging.getLogger("test"))
    a = sup.start(ChildSpec("a", SLEEPER))
    b = sup.start(ChildSpec("b", PARENT_OF_SLEEPER))
    assert b.proc is not None and a.proc is not None
    wait_until(lambda: len(psutil.Process(b.proc.pid).children()) == 1)  # type: ignore[union-attr]
    grandchild = psutil.Process(b.proc.pid).children()[0].pid
    sup.watch(interval=0.05)
    sup.stop()
    for pid in (a.proc.pid, b.proc.pid, grandchild):
        wait_until(lambda pid=pid: not _alive(pid), what=f"pid {pid} survived stop()")
    assert a.restarts == b.restarts == 0  # stopping is not a crash


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    said: list[str] = []
    sup = Supervisor(tmp_path, logging.getLogger("test"), say=said.append)
    stubborn = sup.start(ChildSpec("stubborn", [sys.executable, "-c", textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(300)
    """)]))
    wait_until(lambda: "ready" in (tmp_path / "stubborn.log").read_text())
    sup.stop(timeout=0.5)
    assert stubborn.proc is not None and stubborn.proc.returncode == -signal.SIGKILL
    assert any("did not stop" in line for line in said)


def test_children_die_with_the_supervisor_even_on_sigkill(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a `kill -9` of `gpulens up` must not leave the stack running."""
    script = textwrap.dedent(f"""
        import logging, sys, time
        from pathlib import Path
        from gpulens.up.supervisor import ChildSpec, Supervisor
        sup = Supervisor(Path({str(tmp_path)!r}), logging.getLogger("t"))
        child = sup.start(ChildSpec("sleeper", {SLEEPER!r}))
        print(child.proc.pid, flush=True)
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    parent.kill()
    parent.wait()
    wait_until(lambda: not _alive(child_pid), what="child outlived its SIGKILLed supervisor")
