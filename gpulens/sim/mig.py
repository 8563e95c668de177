"""MIG layout specs ("7x1g.10gb", "3g.40gb+2x2g.20gb") parsed into GPU instances with plausible ids."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpulens.sim.models import MigProfile, Model

MAX_MIG_DEVICES = 7
_COMPUTE_SLICES = 7
_MEMORY_SLICES = 8
# GPU instance ids real drivers hand out per compute-slice count, in placement order.
_GI_IDS = {7: (0,), 4: (1,), 3: (1, 2), 2: (3, 4, 5), 1: (7, 8, 9, 10, 11, 12, 13)}
_TERM = re.compile(r"(?:(\d+)x)?(\d+g\.\d+gb)")


@dataclass(frozen=True)
class MigSlot:
    """One GPU instance (with its single compute instance, id 0) in MIG device-index order."""

    gpu_instance_id: int
    profile: MigProfile


def parse_layout(spec: str, model: Model) -> tuple[MigSlot, ...]:
    """Validate a layout against the model's profiles and slice budget; ValueError says what is allowed."""
    if not model.mig_capable:
        raise ValueError(f"MIG layout {spec!r}: model {model.key} is not MIG capable")
    profiles: list[MigProfile] = []
    for term in spec.replace(" ", "").split("+"):
        match = _TERM.fullmatch(term)
        if match is None or match.group(2) not in model.mig_profiles:
            raise ValueError(_layout_error(spec, model, f"unknown term {term!r}"))
        profiles += [model.mig_profiles[match.group(2)]] * int(match.group(1) or 1)
    compute = sum(p.compute_slices for p in profiles)
    memory = sum(p.memory_slices for p in profiles)
    if not profiles or len(profiles) > MAX_MIG_DEVICES or compute > _COMPUTE_SLICES or memory > _MEMORY_SLICES:
        raise ValueError(
            _layout_error(
                spec, model, f"{len(profiles)} instances, {compute}/{_COMPUTE_SLICES} compute and {memory}/{_MEMORY_SLICES} memory slices"
            )
        )
    used: set[int] = set()
    slots = []
    # larger instances first, as the driver places and enumerates them
    for profile in sorted(profiles, key=lambda p: -p.compute_slices):
        free = [i for i in _GI_IDS[profile.compute_slices] if i not in used]
        if not free:
            raise ValueError(_layout_error(spec, model, f"no placement left for {profile.name}"))
        used.add(free[0])
        slots.append(MigSlot(free[0], profile))
    return tuple(slots)


def _layout_error(spec: str, model: Model, why: str) -> str:
    return (
        f"invalid MIG layout {spec!r} for {model.key} ({why}): expected [Nx]PROFILE joined by '+', "
        f"at most {MAX_MIG_DEVICES} instances, {_COMPUTE_SLICES} compute and {_MEMORY_SLICES} memory "
        f"slices; profiles: {', '.join(model.mig_profiles)}"
    )
