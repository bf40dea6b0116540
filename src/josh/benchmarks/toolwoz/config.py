"""The options of ToolWOZ's commands: `josh eval toolwoz` (every `RunOptions` option, whose defaults are the
paper's) and `josh harvest toolwoz` (those plus the harvest's own, `josh.benchmarks.harvest_options`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from josh.benchmarks.harvest_options import SEARCH, HarvestOptions
from josh.benchmarks.run_options import TASKS, RunOptions, Split, _opt


class ToolWOZEvalConfig(RunOptions):
    """A whole `josh eval toolwoz` run."""

    trials: int = _opt(1, "Conversations per task; the summary reports pass^k for k up to this.", TASKS, ge=1)
    max_turns: int = _opt(
        15, "Messages per conversation, customer and agent together (the paper: 15).", TASKS, ge=1
    )


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
