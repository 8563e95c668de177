"""`gpulens up --fault`: short names for the simulated NVML's faults, injected into the running GPU exporter.

The GPU exporter (with simulated GPUs) takes a fault at run time on its loopback-only
`POST /-/simulate/fault`, in its own syntax (`xid:79@gpu3`, `lost:gpu2`, `throttle:thermal@gpu1`);
the short names here are what a first-time user types.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

SHORT = {  # short name → the exporter's fault syntax (gpulens/sim/faults.py)
    "lost": "lost:gpu2",
    "thermal": "throttle:thermal@gpu1",
    "power": "throttle:power@gpu1",
    "ecc": "ecc-dbe@gpu0",
    "pcie": "pcie-downgrade@gpu0",
    "remap": "remap-failure@gpu0",
}
XID_GPU = 3


def expand(option: str) -> list[str]:
    """`--fault` text → the exporter's fault strings, each checked by its parser; ValueError says what is wrong."""
    from gpulens.sim.faults import parse_fault

    out = []
    for item in filter(None, (part.strip() for part in re.split(r"[,;]", option))):
        if ":" in item:  # already the exporter's syntax
            out.append(item)
        elif m := re.fullmatch(r"xid(\d+)", item):
            out.append(f"xid:{m.group(1)}@gpu{XID_GPU}")
        elif item in SHORT:
            out.append(SHORT[item])
        else:
            allowed = ", ".join(["xid<N> (e.g. xid79)", *SHORT, "or the exporter's syntax, e.g. xid:79@gpu3"])
            raise ValueError(f"unknown fault {item!r} (allowed: {allowed})")
        parse_fault(out[-1], gpus=1 << 16)  # FaultError (a ValueError) names the problem and the grammar
    return out


def inject(exporter_url: str, fault: str, timeout: float = 5.0) -> str:
    """Ask the GPU exporter to inject `fault`; returns its answer, raises RuntimeError with its message."""
    req = urllib.request.Request(exporter_url.rstrip("/") + "/-/simulate/fault", data=fault.encode(),
                                 headers={"Content-Type": "text/plain"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace").strip()
        raise RuntimeError(f"GPU exporter refused fault {fault!r}: HTTP {err.code} {body}") from err
    except OSError as err:
        raise RuntimeError(f"GPU exporter unreachable for fault {fault!r}: {err}") from err
