"""InferenceServices as probe targets, through the KServe exporter's discovery (not a second copy of it).

`gpulens.exporters.kserve.discovery.list_probe_targets` lists the InferenceServices once and returns
objects with `namespace`, `inferenceservice`, `model`, `url`, `protocol`; `to_targets` turns them
into probe Targets (named `<namespace>/<inferenceservice>`, payload from the model's v2 metadata,
the command's interval/timeout/connection), and `Discovery` refreshes them on a Loop and hands the
static targets plus the discovered ones to `ProbeApp.set_targets`, which starts new targets' loops
and drops the series of InferenceServices that went away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from gpulens.loop import Loop
from gpulens.probes.inference.config import ProbeConfig, Target


def to_targets(discovered: Iterable[Any], cfg: ProbeConfig) -> list[Target]:
    """KServe discovery's ProbeTargets → probe Targets (v1/v2 with `payload: metadata`)."""
    out = []
    for d in discovered:
        if d.protocol not in ("v1", "v2") or not str(d.url).startswith(("http://", "https://")):
            continue
        out.append(Target(
            name=f"{d.namespace}/{d.inferenceservice}", url=str(d.url).rstrip("/"), model=d.model, protocol=d.protocol,
            payload=None, expect_from_metadata=True, interval_seconds=cfg.interval_seconds,
            timeout_seconds=cfg.timeout_seconds, connection=cfg.connection,
            labels={"namespace": d.namespace, "inferenceservice": d.inferenceservice},
        ))
    return sorted(out, key=lambda t: t.name)


def kserve_lister(cfg: ProbeConfig) -> Callable[[], list[Any]]:
    """The KServe exporter's one-shot lister, bound to this command's Kubernetes settings."""
    from gpulens.exporters.kserve.discovery import list_probe_targets

    namespaces = tuple(n.strip() for n in cfg.discover_namespaces.split(",") if n.strip())

    def run() -> list[Any]:
        return list(list_probe_targets(kubeconfig=cfg.kubeconfig, namespaces=namespaces, label_selector=cfg.discover_selector))

    return run


class Discovery:
    """Every `discover_interval_seconds`: list InferenceServices and update the app's targets.

    A failed list keeps the last targets (the Loop backs off and logs once), so an API outage does
    not stop probing what was known.
    """

    def __init__(self, cfg: ProbeConfig, static: list[Target], set_targets: Callable[[list[Target]], None],
                 lister: Callable[[], list[Any]], log: logging.Logger):
        self.cfg, self.static, self.set_targets, self.lister = cfg, static, set_targets, lister
        self.loop = Loop("probe-discovery", self.step, cfg.discover_interval_seconds, log, jitter=cfg.jitter)

    def step(self) -> None:
        discovered = to_targets(self.lister(), self.cfg)
        static_names = {t.name for t in self.static}
        self.set_targets(self.static + [t for t in discovered if t.name not in static_names])
