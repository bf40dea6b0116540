"""The options of `josh serve-mock`: how the scripted mock behaves, whose tasks it plays, and its port."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from josh.benchmarks.tau2_config import Tau2Domain
from josh.benchmarks.toolwoz_config import MOCK, TASKS, MockOptions, _opt

DEFAULT_TAU2_DOMAIN = "airline"


class ServeMockOptions(MockOptions):
    """`josh serve-mock`."""

    PANELS: ClassVar[tuple[str, ...]] = (TASKS, MOCK)

    benchmark: Literal["toolwoz", "tau2"] = _opt(
        "toolwoz", "Whose tasks the mock plays: ToolWOZ's, or tau2-bench's (one --domain).", TASKS
    )
    domain: Tau2Domain | None = _opt(
        None, f"tau2 domain, with --benchmark tau2: airline, retail or telecom (default {DEFAULT_TAU2_DOMAIN}).",
        TASKS,
    )  # fmt: skip
    port: int = _opt(8765, "Port on 127.0.0.1 (0 picks a free one).", MOCK, ge=0, le=65535)

    @model_validator(mode="after")
    def _domain_is_tau2s(self) -> ServeMockOptions:
        if self.domain is not None and self.benchmark != "tau2":
            raise ValueError(f"--domain {self.domain} is a tau2 domain: add --benchmark tau2")
        return self

    @property
    def tau2_domain(self) -> str:
        """The tau2 domain served (with --benchmark tau2)."""
        return self.domain or DEFAULT_TAU2_DOMAIN
