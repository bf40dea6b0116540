"""Configuration of the JOSH beam search (`josh.search.beam.JoshSearch`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SearchConfig(BaseModel):
    """How a JOSH tree grows. The defaults are the paper's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beam: int = Field(
        8,
        ge=1,
        description="Most live leaves of a tree: every live leaf splits in two while twice their number is at "
        "most this (1, 2, 4, 8 with the paper's 8), then each leaf goes on alone; 1 never splits: each tree "
        "is one sampled conversation (flat sampling, as rejection-sampling fine-tuning draws).",
    )
    max_steps: int = Field(
        15,
        ge=1,
        description="Most steps of a tree; a step is one agent turn on every live leaf, then one customer "
        "turn (the paper: 15).",
    )
    finish: bool = Field(
        False,
        description="Once every goal is met, the golden conversation plays on alone (no more branching) "
        "until the customer ends it or the steps run out, so its closing turns are kept (off: the tree "
        "stops at the last goal, as the paper's).",
    )
    use_n: bool = Field(
        True,
        description="Sibling leaves send their identical first request as one model call with n choices, so "
        "its prompt is paid once (off: one call each, with a different seed per sibling).",
    )
    sequential: bool = Field(
        False,
        description="Step the leaves one after another, as the reference implementation does (for "
        "comparison); n-sampling needs the siblings at once, so it is off then.",
    )
