"""The metric catalogue: every family gpulens exports, one module per component.

Exporters, dashboards, alert rules, the README table and the tests import these objects, so a
rename cannot leave a dashboard or an alert querying nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gpulens.metrics.family import Family

# One module per component; each defines its families as module-level `Family` constants.
COMPONENTS = ("gpu", "kserve", "probe", "canary", "logship", "pod", "self")


def module(component: str) -> ModuleType:
    return importlib.import_module(f"gpulens.metrics.{component}")


def families(component: str | None = None) -> list[Family]:
    """Every family of one component (or of all), in definition order."""
    names = COMPONENTS if component is None else (component,)
    seen: dict[str, Family] = {}  # a component may re-export another's family (gpu serves self's)
    for name in names:
        for v in vars(module(name)).values():
            if isinstance(v, Family):
                seen.setdefault(v.name, v)
    return list(seen.values())


__all__ = ["COMPONENTS", "Family", "families", "module"]
