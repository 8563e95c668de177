"""`make test-gpu`'s checks, run against every simulated board so they cannot rot where no GPU is."""

from __future__ import annotations

import pytest

from gpulens.sim import MODELS, SimulatedNVML
from tests.test_gpu_real import check_every_family, check_values, read_samples


@pytest.mark.parametrize("model", sorted(MODELS))
def test_make_test_gpu_checks_pass_on_simulated_boards(model: str) -> None:
    samples = read_samples(SimulatedNVML(count=2, model=model), "simulated")
    check_every_family(samples)  # fan (passive boards) and retired pages (Ampere+) are NotSupported, not MISSING
    check_values(samples)
