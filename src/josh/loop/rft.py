"""The RFT baseline's budget: rejection-sampling fine-tuning draws N independent conversations a task (a harvest
with beam 1: trees that never branch), with N chosen so that its agent turns match what JOSH may spend on the
same task with the round's harvest settings.

The budget is counted in agent turns, the unit both searches spend (each turn is one or more model calls, alike
on both sides). A JOSH tree runs at most `max_steps` steps, each one agent turn on every live leaf; before each
step the leaves double while twice their number fits the beam (1 -> 2 -> 4 -> 8 with beam 8) and a tree never
has more: the most a tree can spend, reached when no goal is met and no branch ends (a goal met moves the root
to one leaf, which branches anew). A flat conversation runs at most `max_steps` agent turns. So N = the JOSH
tree's most turns over `max_steps`, rounded up: RFT never gets less than JOSH could spend (beam 8 and 15 steps:
2 + 4 + 8 x 13 = 110 turns, N = 8, 120 turns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from josh.search import SearchConfig


@dataclass(frozen=True)
class RftBudget:
    """N (conversations a task) and the budgets, in agent turns a task, it was chosen from."""

    beam: int
    max_steps: int
    josh_turns: int
    samples: int

    @property
    def rft_turns(self) -> int:
        return self.samples * self.max_steps

    def line(self) -> str:
        """The budget as `josh loop --plan` prints it."""
        return (
            f"rft: {self.samples} conversations a task (harvest beam 1, trials x {self.samples}), at most "
            f"{self.samples} x {self.max_steps} = {self.rft_turns} agent turns a task; JOSH with beam "
            f"{self.beam} and {self.max_steps} steps spends at most {self.josh_turns} (its leaves a step: "
            f"{josh_leaves_text(self.beam, self.max_steps)})"
        )


def josh_leaves(beam: int, max_steps: int) -> list[int]:
    """The live leaves of each step of a JOSH tree that never meets a goal: the most it can spend."""
    leaves, steps = 1, []
    for _ in range(max_steps):
        if 2 * leaves <= beam:
            leaves *= 2
        steps.append(leaves)
    return steps


def josh_leaves_text(beam: int, max_steps: int) -> str:
    steps = josh_leaves(beam, max_steps)
    growing = [n for i, n in enumerate(steps) if i == 0 or n != steps[i - 1]]
    plateau = len(steps) - len(growing) + 1
    shown = [str(n) for n in growing[:-1]] + [
        f"{growing[-1]} x {plateau}" if plateau > 1 else str(growing[-1])
    ]
    return " + ".join(shown)


def rft_budget(harvest: dict[str, Any]) -> RftBudget:
    """N for the round's harvest options (the loop's `harvest` section with `common`; the search's defaults
    where it names none)."""
    defaults = SearchConfig()
    beam = int(harvest.get("beam", defaults.beam))
    max_steps = int(harvest.get("max_steps", defaults.max_steps))
    josh_turns = sum(josh_leaves(beam, max_steps))
    return RftBudget(beam, max_steps, josh_turns, max(1, math.ceil(josh_turns / max_steps)))
