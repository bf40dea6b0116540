"""The benchmarks the commands know, registered once: `josh eval NAME`, `josh harvest NAME` and `josh serve-mock
--benchmark NAME` come from `BENCHMARKS`, in its order. Each is a folder under `josh/benchmarks/` whose
`commands.py` declares its `BenchmarkCommands`; this is the one module above `josh/benchmarks/` that names a
benchmark's folder (`tests/test_layers.py` checks it).

Also here, because it lists every benchmark: the options of `josh serve-mock` (how the scripted mock behaves,
whose tasks it plays, and its port).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from josh.benchmarks.benchmark import BenchmarkCommands
from josh.benchmarks.run_options import MOCK, TASKS, MockOptions, _opt
from josh.benchmarks.tau2.commands import TAU2
from josh.benchmarks.tau2.config import DEFAULT_TAU2_DOMAIN, Tau2Domain
from josh.benchmarks.toolwoz.commands import TOOLWOZ

BENCHMARKS: tuple[BenchmarkCommands, ...] = (TOOLWOZ, TAU2)  # the first is serve-mock's default

_NAMES = tuple(entry.name for entry in BENCHMARKS)
_SERVED = [entry.served_help for entry in BENCHMARKS]


def registered(name: str) -> BenchmarkCommands:
    """The registered benchmark called `name` (one of `BENCHMARKS`)."""
    return next(entry for entry in BENCHMARKS if entry.name == name)


class ServeMockOptions(MockOptions):
    """`josh serve-mock`."""

    PANELS: ClassVar[tuple[str, ...]] = (TASKS, MOCK)

    benchmark: Literal[_NAMES] = _opt(  # type: ignore[valid-type]  # the registered names
        _NAMES[0],
        "Whose tasks the mock plays: " + (", ".join(_SERVED[:-1]) + ", or " if len(_SERVED) > 1 else "")
        + f"{_SERVED[-1]}.",
        TASKS,
    )
    # tau2's: its tasks come in domains
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
