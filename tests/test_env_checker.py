"""Every registered environment passes `check_env`, and the checker catches a broken one."""

from __future__ import annotations

from typing import Any

import pytest

from josh.envs.checker import EnvCheckError, check_env
from josh.envs.toolwoz import ToolWOZEnvironment


@pytest.mark.data
@pytest.mark.parametrize("task_id", ["MUL0003", "MUL0986", "SNG01152", "PMUL0002"])
def test_toolwoz_passes_the_checker(toolwoz_env: ToolWOZEnvironment, task_id: str) -> None:
    check_env(toolwoz_env, task_id)


class _LeakySession:
    shared: dict[str, Any] = {"name": "acorn"}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"properties": {}}}}]

    def call(self, name: Any, arguments: Any = None) -> Any:
        if name != "lookup":
            return "ERROR: unknown tool"
        return self.shared  # the bug: every caller gets the same object

    def score(self) -> float:
        return 0.0

    def snapshot(self) -> None:
        return None

    def restore(self, snapshot: None) -> None:
        pass


class _LeakyEnv:
    def session(self, task_id: str) -> _LeakySession:
        return _LeakySession()


def test_the_checker_catches_aliased_results() -> None:
    with pytest.raises(EnvCheckError, match="share state"):
        check_env(_LeakyEnv(), "any")
