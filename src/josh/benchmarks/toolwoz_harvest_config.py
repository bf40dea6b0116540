"""Configuration of a ToolWOZ JOSH harvest: every `RunOptions` option, plus the harvest's own
(`josh.benchmarks.harvest_config`)."""

from __future__ import annotations

from typing import ClassVar

from josh.benchmarks.harvest_config import (
    PAPER_JOSH_TEMPERATURE,
    SEARCH,
    TEMPERATURE_ABOVE_0,
    HarvestOptions,
)
from josh.benchmarks.toolwoz_config import TASKS, RunOptions, Split, _opt

__all__ = ["PAPER_JOSH_TEMPERATURE", "SEARCH", "TEMPERATURE_ABOVE_0", "ToolWOZHarvestConfig"]


class ToolWOZHarvestConfig(HarvestOptions, RunOptions):
    """A whole `josh harvest toolwoz` run: one JOSH tree per (task, trial)."""

    PANELS: ClassVar[tuple[str, ...]] = (SEARCH, *RunOptions.PANELS)

    split: Split = _opt(
        "train",
        "Task split: train (6,251, what JOSH harvests), test (450), full_test (805), val (793) or all.",
        TASKS,
    )
