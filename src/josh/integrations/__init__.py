"""Adapters for the RL stacks users run, over `josh.gym`: TRL's `GRPOTrainer(environment_factory=...)`
(`trl_environment`). verifiers is not adapted: see the README ("From RL stacks")."""

from josh.integrations.trl_environment import (
    JoshTRLEnvironment,
    tool_method,
    trl_dataset,
    trl_environment_factory,
)

__all__ = ["JoshTRLEnvironment", "tool_method", "trl_dataset", "trl_environment_factory"]
