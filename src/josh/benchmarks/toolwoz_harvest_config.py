"""Configuration of a ToolWOZ JOSH harvest: every `RunOptions` option, plus the harvest's own
(`josh.benchmarks.harvest_config`)."""

from __future__ import annotations

from typing import ClassVar, Literal

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
        "Task split: train (6,251, what JOSH harvests), paper_train (the 926 train tasks the paper "
        "harvested), test (450), full_test (805), val (793) or all.",
        TASKS,
    )
    crediting: Literal["turn", "call"] = _opt(
        "turn",
        "When a met goal call stops being pending: 'turn' (the paper's search) judges every call of an agent "
        "turn against the goals pending when the turn began and removes the met ones when it ends; 'call' "
        "removes each goal as soon as one call meets it, as evaluation does.",
        SEARCH,
    )
