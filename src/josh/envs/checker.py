"""`check_env`: small named checks every environment must pass (after Gymnasium's env checker).

An environment here is what josh's rollouts use: `env.session(task_id)` gives a fresh conversation state
with `tools` (OpenAI function schemas), `call(name, arguments)`, `reward_events`, `score()`, and
`snapshot()`/`restore()` for beam search.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, Protocol


class EnvCheckError(AssertionError):
    """An environment broke one of the contracts `check_env` verifies; the message says which."""


class Session(Protocol):
    @property
    def tools(self) -> list[dict[str, Any]]: ...

    def call(self, name: Any, arguments: Any = None) -> Any: ...

    def score(self) -> float: ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...


class Environment(Protocol):
    def session(self, task_id: str) -> Session: ...


def _sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("function", {}).get("parameters", {}).get("properties", {})
    out: dict[str, Any] = {}
    for name, spec in properties.items():
        enum = spec.get("enum")
        out[name] = enum[0] if enum else "x" if spec.get("type", "string") == "string" else 1
    return out


def _frozen(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def check_fresh_sessions_are_equal(env: Environment, task_id: str) -> None:
    a, b = env.session(task_id), env.session(task_id)
    if _frozen(a.tools) != _frozen(b.tools) or a.score() != b.score():
        raise EnvCheckError(f"two fresh sessions of {task_id} differ")


def check_calls_are_deterministic(env: Environment, task_id: str) -> None:
    for schema in env.session(task_id).tools:
        name, args = schema["function"]["name"], _sample_arguments(schema)
        first = env.session(task_id).call(name, copy.deepcopy(args))
        second = env.session(task_id).call(name, copy.deepcopy(args))
        if _frozen(first) != _frozen(second):
            raise EnvCheckError(f"{name}({args}) gave different results in two fresh sessions of {task_id}")


def check_results_are_not_aliased(env: Environment, task_id: str) -> None:
    session = env.session(task_id)
    for schema in session.tools:
        name, args = schema["function"]["name"], _sample_arguments(schema)
        result = session.call(name, args)
        before = _frozen(env.session(task_id).call(name, args))
        if isinstance(result, list) and result and isinstance(result[0], dict):
            result[0]["__tampered__"] = True
        elif isinstance(result, dict):
            result["__tampered__"] = True
        if _frozen(env.session(task_id).call(name, args)) != before:
            raise EnvCheckError(f"mutating the result of {name} changed later results: results share state")
    tools = session.tools
    tools.clear()
    if not session.tools:
        raise EnvCheckError("mutating `tools` changed the session's tools")


def check_snapshot_restore(env: Environment, task_id: str) -> None:
    session = env.session(task_id)
    snapshot = session.snapshot()
    score = session.score()
    for schema in session.tools:
        session.call(schema["function"]["name"], _sample_arguments(schema))
    session.restore(snapshot)
    if session.score() != score:
        raise EnvCheckError("restore() did not bring back the snapshot's score")


def check_every_tool_accepts_a_sample_call(env: Environment, task_id: str) -> None:
    session = env.session(task_id)
    for schema in session.tools:
        name = schema.get("function", {}).get("name")
        if not isinstance(name, str):
            raise EnvCheckError(f"tool schema without a function name: {schema}")
        try:
            json.dumps(session.call(name, _sample_arguments(schema)))
        except Exception as exc:
            raise EnvCheckError(
                f"{name} raised {type(exc).__name__} on a call its schema allows: {exc}"
            ) from exc


def check_bad_calls_answer_not_raise(env: Environment, task_id: str) -> None:
    session = env.session(task_id)
    for name, args in [("no_such_tool", {}), (None, {}), ("no_such_tool", "not json"), ("no_such_tool", [1])]:
        try:
            result = session.call(name, args)
        except Exception as exc:
            raise EnvCheckError(
                f"call({name!r}, {args!r}) raised {type(exc).__name__} instead of an error result"
            ) from exc
        if not isinstance(result, str) or "ERROR" not in result.upper():
            raise EnvCheckError(f"call({name!r}, {args!r}) should give an error result, gave {result!r}")


CHECKS: tuple[Callable[[Environment, str], None], ...] = (
    check_fresh_sessions_are_equal,
    check_calls_are_deterministic,
    check_results_are_not_aliased,
    check_snapshot_restore,
    check_every_tool_accepts_a_sample_call,
    check_bad_calls_answer_not_raise,
)


def check_env(env: Environment, task_id: str) -> None:
    """Run every check on one task; raise `EnvCheckError` naming the first contract broken."""
    for check in CHECKS:
        check(env, task_id)
