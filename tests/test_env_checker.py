"""Every registered environment passes `check_env`, and the checker catches a broken one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from josh.envs.checker import EnvCheckError, check_env
from josh.envs.toolwoz import ToolWOZEnvironment


@pytest.mark.data
@pytest.mark.parametrize("task_id", ["MUL0003", "MUL0986", "SNG01152", "PMUL0002"])
def test_toolwoz_passes_the_checker(toolwoz_env: ToolWOZEnvironment, task_id: str) -> None:
    check_env(toolwoz_env, task_id)


class _LeakySession:
    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared
        self.tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"properties": {}}}}]

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
    """Its sessions share one result object. Built fresh for each test: the checker tampers with that
    object and clears `tools`, so class-level state would not be caught a second time in one process."""

    def __init__(self) -> None:
        self.shared: dict[str, Any] = {"name": "acorn"}

    def session(self, task_id: str) -> _LeakySession:
        return _LeakySession(self.shared)


def test_the_checker_catches_aliased_results() -> None:
    with pytest.raises(EnvCheckError, match="share state"):
        check_env(_LeakyEnv(), "any")


class _ToySession:
    """A correct toy environment: one tool, state = the calls made, score = share of calls to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @property
    def tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "lookup", "parameters": {"properties": {"q": {}}}}}]

    def call(self, name: Any, arguments: Any = None) -> Any:
        known = type(name) is str and name == "lookup"
        self.calls.append("lookup" if known else "other")
        return {"answer": 42} if known else "ERROR: unknown tool"

    def score(self) -> float:
        return 0.0  # sample calls never change it: only the snapshot comparison can catch a broken restore

    def snapshot(self) -> tuple[str, ...]:
        return tuple(self.calls)

    def restore(self, snapshot: tuple[str, ...]) -> None:
        self.calls = list(snapshot)


class _ToyEnv:
    session_class: type = _ToySession

    def session(self, task_id: str) -> Any:
        return self.session_class()


class _NoOpRestoreSession(_ToySession):
    def restore(self, snapshot: tuple[str, ...]) -> None:
        pass  # the bug: the calls made since the snapshot stay


class _CopyingSession(_ToySession):
    def call(self, name: Any, arguments: Any = None) -> Any:
        copy.deepcopy(arguments)  # the bug: a RecursionError or TypeError on odd arguments
        return super().call(name, arguments)


class _UnserialisableSession(_ToySession):
    def call(self, name: Any, arguments: Any = None) -> Any:
        result = super().call(name, arguments)
        return {"echo": arguments} if type(arguments) is bytes else result  # the bug: bytes in a result


def test_a_correct_toy_env_passes() -> None:
    check_env(_ToyEnv(), "any")


@pytest.mark.parametrize(
    ("session_class", "message"),
    [
        (_NoOpRestoreSession, "restore lost state"),
        (_CopyingSession, "call\\(\\) raised .* on a list nested 1,000 deep as arguments"),
        (_UnserialisableSession, "result of a call with bytes as arguments is not JSON-serialisable"),
    ],
)
def test_the_checker_catches_a_broken_contract(session_class: type, message: str) -> None:
    env = _ToyEnv()
    env.session_class = session_class
    with pytest.raises(EnvCheckError, match=message):
        check_env(env, "any")
