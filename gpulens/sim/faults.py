"""Simulated faults reachable from outside the process: `--simulate-faults` and `POST /-/simulate/fault`.

Grammar (one fault; several are joined with ';' or newlines):

    FAULT   := KIND [":" ARG] ("@" PLACE)*
    PLACE   := "gpu" N ["+" TIME]          the GPU, optionally "+60s": at that time
             | TIME [".." TIME]            at TIME, or from TIME until TIME (then undone)
    TIME    := NUMBER ["ms" | "s" | "m" | "h"]   seconds by default; counted from when the fault is
                                                 given (exporter start for --simulate-faults)

No time means now. Kinds:

    xid:CODE@gpuN              an XID critical-error event (79 fell off the bus, 48 DBE, 94/95 ECC, …)
    lost:gpuN | lost@gpuN      every call on the GPU answers GpuIsLost; with a window, it comes back
    hang:NVML_FUNCTION[@gpuN]  calls to that function block (on that GPU or every GPU) until the window ends
    error:NVML_FUNCTION=NAME[@gpuN]  calls raise NVMLError_NAME (Unknown, Timeout, NotSupported, …)
    throttle:REASON@gpuN       clock-event reason held: thermal, power, hw-slowdown, power-brake, sync-boost
    pcie-downgrade@gpuN        the PCIe link trains down (Gen 5 x16 -> Gen 3 x8, say); replays counted too
    ecc-sbe[:COUNT]@gpuN       corrected ECC errors (+ event); ecc-dbe[:COUNT]@gpuN uncorrected (+ XID 48)
    remap-pending@gpuN, remap-failure@gpuN   row remapping needs a reset / failed
    load:RATIO@gpuN            pin the GPU's load to RATIO (0..1); with a window, back to the curve after

Examples: `xid:79@gpu3+60s`, `lost:gpu2@120s..180s`, `hang:nvmlDeviceGetTemperatureV@30s..40s`,
`throttle:thermal@gpu1`, `pcie-downgrade@gpu0`, `ecc-dbe@gpu5`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pynvml

from gpulens.sim.nvml import SIMULATED_FUNCTIONS, SimulatedNVML

GRAMMAR = (
    "FAULT := KIND[:ARG][@gpuN[+TIME]][@TIME[..TIME]]; KINDs: xid:CODE, lost, hang:NVML_FN, error:NVML_FN=NAME, "
    "throttle:thermal|power|hw-slowdown|power-brake|sync-boost, pcie-downgrade, ecc-sbe[:N], ecc-dbe[:N], remap-pending, "
    "remap-failure, load:RATIO; TIME like 30s, 500ms, 2m; no time = now"
)
THROTTLE = {
    "thermal": pynvml.nvmlClocksEventReasonSwThermalSlowdown | pynvml.nvmlClocksEventReasonHwThermalSlowdown,
    "power": pynvml.nvmlClocksEventReasonSwPowerCap,
    "hw-slowdown": pynvml.nvmlClocksEventReasonHwSlowdown,
    "power-brake": pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown,
    "sync-boost": pynvml.nvmlClocksEventReasonSyncBoost,
}
KINDS = ("xid", "lost", "hang", "error", "throttle", "pcie-downgrade", "ecc-sbe", "ecc-dbe", "remap-pending", "remap-failure", "load")
_TIME = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_GPU = re.compile(r"gpu(\d+)(?:\+(.+))?")
_ERRORS = {name.removeprefix("NVML_ERROR_").replace("_", "").lower(): code
           for name, code in vars(pynvml).items() if name.startswith("NVML_ERROR_") and isinstance(code, int)}


class FaultError(ValueError):
    """A fault spec that does not parse or names something the simulation lacks; one line, with the grammar."""


@dataclass(frozen=True)
class Fault:
    """One parsed fault: what, where, and when (seconds after it was given; end None = never undone)."""

    spec: str
    kind: str
    arg: str = ""
    gpu: int | None = None
    start: float = 0.0
    end: float | None = None


def _seconds(text: str, spec: str) -> float:
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise FaultError(f"fault {spec!r}: bad time {text!r} (like 30s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_fault(spec: str, gpus: int) -> Fault:
    """One fault spec; FaultError names what is wrong and the grammar."""
    text = spec.strip()
    head, *places = text.split("@")
    kind, _, arg = head.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise FaultError(f"fault {text!r}: unknown kind {kind!r} (kinds: {', '.join(KINDS)}); grammar: {GRAMMAR}")
    gpu: int | None = None
    start, end = 0.0, None
    if kind == "lost" and arg.startswith("gpu"):
        places.insert(0, arg)
        arg = ""
    for place in places:
        place = place.strip()
        gpu_match = _GPU.fullmatch(place)
        if gpu_match:
            gpu = int(gpu_match.group(1))
            if gpu_match.group(2):
                start = _seconds(gpu_match.group(2), text)
        elif ".." in place:
            first, _, last = place.partition("..")
            start, end = _seconds(first, text), _seconds(last, text)
            if end <= start:
                raise FaultError(f"fault {text!r}: window {place!r} ends before it starts")
        else:
            start = _seconds(place, text)
    if gpu is not None and not 0 <= gpu < gpus:
        raise FaultError(f"fault {text!r}: no gpu{gpu}; the simulation has gpu0..gpu{gpus - 1}")
    _check(text, kind, arg, gpu)
    return Fault(text, kind, arg, gpu, start, end)


def _check(text: str, kind: str, arg: str, gpu: int | None) -> None:
    needs_gpu = kind not in ("hang", "error")
    if needs_gpu and gpu is None:
        raise FaultError(f"fault {text!r}: {kind} needs a GPU, e.g. {kind}{':' + arg if arg else ''}@gpu0")
    if kind == "xid" and not arg.isdigit():
        raise FaultError(f"fault {text!r}: xid needs a numeric code, e.g. xid:79@gpu3")
    if kind in ("ecc-sbe", "ecc-dbe") and arg and not arg.isdigit():
        raise FaultError(f"fault {text!r}: {kind} count must be a whole number")
    if kind == "hang" and arg not in SIMULATED_FUNCTIONS:
        raise FaultError(f"fault {text!r}: {arg!r} is not a simulated NVML function (e.g. nvmlDeviceGetTemperatureV)")
    if kind == "error":
        function, _, name = arg.partition("=")
        if function not in SIMULATED_FUNCTIONS:
            raise FaultError(f"fault {text!r}: {function!r} is not a simulated NVML function")
        if name.replace("_", "").lower() not in _ERRORS:
            raise FaultError(f"fault {text!r}: unknown NVML error {name!r} (e.g. Unknown, Timeout, NotSupported)")
    if kind == "throttle" and arg not in THROTTLE:
        raise FaultError(f"fault {text!r}: throttle reason must be one of {', '.join(THROTTLE)}")
    if kind == "load":
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise FaultError(f"fault {text!r}: load needs a ratio in 0..1, e.g. load:0.99@gpu1")


def parse_faults(text: str, gpus: int) -> list[Fault]:
    """Every fault in a ';'- or newline-separated list (all checked before any is applied)."""
    return [parse_fault(part, gpus) for part in re.split(r"[;\n]", text) if part.strip()]


class FaultInjector:
    """Applies parsed faults to a SimulatedNVML now or at their time, undoing windowed ones at their end."""

    def __init__(self, nvml: SimulatedNVML, log: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic):
        self.nvml = nvml
        self._log = log or logging.getLogger("gpulens.sim.faults")
        self._clock = clock
        self._queue: list[tuple[float, int, str, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.applied: list[str] = []  # "spec" / "spec (end)" in the order they took effect (tests)

    def add(self, text: str) -> list[Fault]:
        """Parse and schedule `text`; faults due now are applied before this returns."""
        faults = parse_faults(text, len(self.nvml._gpus))
        now = self._clock()
        with self._cond:
            for fault in faults:
                begin, undo = self._actions(fault)
                self._push(now + fault.start, fault.spec, begin)
                if fault.end is not None:
                    self._push(now + fault.end, f"{fault.spec} (end)", undo)
            self._cond.notify()
        self.run_due()
        return faults

    def start(self) -> FaultInjector:
        self._thread = threading.Thread(target=self._run, name="gpulens-sim-faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(2.0)

    def run_due(self) -> None:
        """Apply every action whose time has come (the thread calls this; tests may too)."""
        while True:
            with self._cond:
                if not self._queue or self._queue[0][0] > self._clock():
                    return
                _, _, label, action = heapq.heappop(self._queue)
            try:
                action()
                self.applied.append(label)
                self._log.warning(f"simulated fault: {label}", extra={"event": {"action": "simulated-fault"}})
            except Exception as err:  # noqa: BLE001 - a bad fault must not end the injector
                self._log.error(f"simulated fault {label} failed: {err!r}")

    def _push(self, at: float, label: str, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._order), label, action))

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                wait = self._queue[0][0] - self._clock() if self._queue else None
                if wait is None or wait > 0:
                    self._cond.wait(wait)
                    continue
            self.run_due()

    def _actions(self, fault: Fault) -> tuple[Callable[[], None], Callable[[], None]]:
        """(apply, undo) for one fault."""
        nv, gpu, arg = self.nvml, fault.gpu if fault.gpu is not None else 0, fault.arg
        kind = fault.kind
        if kind == "xid":
            return (lambda: nv.inject_xid(gpu, int(arg))), _nothing
        if kind == "lost":
            return (lambda: nv.lose_gpu(gpu)), (lambda: nv.restore_gpu(gpu))
        if kind == "hang":
            event = threading.Event()
            return (lambda: nv.hang(arg, event, fault.gpu)), (lambda: nv.unhang(arg, fault.gpu))
        if kind == "error":
            function, _, name = arg.partition("=")
            code = _ERRORS[name.replace("_", "").lower()]
            return (lambda: nv.set_error(function, code, fault.gpu)), (lambda: nv.clear_error(function, fault.gpu))
        if kind == "throttle":
            mask = int(THROTTLE[arg])
            return (lambda: nv.set_throttle(gpu, mask)), (lambda: nv.set_throttle(gpu, 0))
        if kind == "pcie-downgrade":
            model = nv.model

            def downgrade() -> None:
                nv.set_pcie_link(gpu, max(1, model.pcie_gen - 2), max(1, model.pcie_width // 2))
                nv.add_pcie_replays(gpu, 100)

            return downgrade, (lambda: nv.set_pcie_link(gpu, model.pcie_gen, model.pcie_width))
        if kind in ("ecc-sbe", "ecc-dbe"):
            count = int(arg or 1)
            if kind == "ecc-sbe":
                return (lambda: nv.add_ecc(gpu, corrected=count)), _nothing

            def dbe() -> None:
                nv.add_ecc(gpu, uncorrected=count)
                nv.add_remapped_rows(gpu, unc=count, pending=True)
                nv.inject_xid(gpu, 48)

            return dbe, _nothing
        if kind == "remap-pending":
            return (lambda: nv.add_remapped_rows(gpu, unc=1, pending=True)), _nothing
        if kind == "remap-failure":
            return (lambda: nv.add_remapped_rows(gpu, unc=1, failure=True)), _nothing
        if kind == "load":
            ratio = float(arg)
            return (lambda: nv.set_load(gpu, ratio)), (lambda: nv.set_load(gpu, None))
        raise FaultError(f"fault {fault.spec!r}: unknown kind {kind!r}")


def _nothing() -> None:
    return None
