"""`gpulens top`: a terminal view of GPUs, inference services, probes and alerts, refreshed every second."""

from gpulens.top.app import run
from gpulens.top.config import TopConfig

__all__ = ["TopConfig", "run"]
