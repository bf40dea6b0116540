"""The options every JOSH harvest adds to its benchmark's run options: the search's own, and an agent that
samples. `ToolWOZHarvestConfig` and `Tau2HarvestConfig` are a benchmark's run options plus these, declared
once here; the search options take their defaults and help from `josh.search.SearchConfig`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator

from josh.benchmarks.run_options import AGENT, _opt
from josh.search import SearchConfig

SEARCH = "JOSH search"
PAPER_JOSH_TEMPERATURE = 1.0  # the reference refuses 0 for JOSH; its own default (0.0) cannot be used

TEMPERATURE_ABOVE_0 = (
    "JOSH samples the agent, so its temperature must be above 0 for sibling branches to differ "
    f"(default {PAPER_JOSH_TEMPERATURE}; the customer keeps its own)"
)


def _search_opt(name: str, **constraints: Any) -> Any:
    field = SearchConfig.model_fields[name]
    return _opt(field.default, field.description or "", SEARCH, **constraints)


class HarvestOptions(BaseModel):
    """Mixed in before a benchmark's run options: `class XHarvestConfig(HarvestOptions, XRunOptions)`."""

    beam: int = _search_opt("beam", ge=1)
    max_steps: int = _search_opt("max_steps", ge=1)
    use_n: bool = _search_opt("use_n")
    finish: bool = _search_opt("finish")
    temperature: float = _opt(
        PAPER_JOSH_TEMPERATURE,
        "Agent sampling temperature; JOSH needs it above 0, so that sibling branches differ (the customer "
        "keeps --user-temperature).",
        AGENT,
        ge=0.0,
        le=2.0,
    )

    @field_validator("temperature")
    @classmethod
    def _sampled(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(TEMPERATURE_ABOVE_0)
        return value

    @property
    def requests_in_flight(self) -> int:
        """Every live leaf of every tree running has its request in flight: up to --beam a tree."""
        return self.concurrency * self.beam  # type: ignore[attr-defined]  # the run options' field

    def search_config(self) -> SearchConfig:
        """The search's settings."""
        return SearchConfig(beam=self.beam, max_steps=self.max_steps, use_n=self.use_n, finish=self.finish)
