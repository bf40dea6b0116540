"""`check_env`: small named checks every environment must pass (after Gymnasium's env checker).

An environment here is what josh's rollouts use: `env.session(task_id)` gives a fresh conversation state
with `tools` (OpenAI function schemas), `call(name, arguments)`, `reward_events`, `score()`, and
`snapshot()`/`restore()` for beam search; and what a conversation needs of it: `result_text(result)` (a
result as the agent reads it), `say(role, content)` (the messages, for environments that score them),
`stop_tokens` (what the customer says to end the conversation) and `final_reward(ended)`.
"""

from __future__ import annotations

import copy
import json
import threading
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

    def result_text(self, result: Any) -> str: ...

    def say(self, role: str, content: Any) -> None: ...

    @property
    def stop_tokens(self) -> tuple[str, ...]: ...

    def final_reward(self, ended: bool) -> float: ...

    @property
    def opening(self) -> str | None: ...


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
    """snapshot -> calls -> restore leaves the session equal to its snapshot, and later calls answer as in a
    fresh session: a `restore` that does nothing (or half its job) is caught whether or not the score moved."""
    session = env.session(task_id)
    snapshot = session.snapshot()
    score = session.score()
    calls = [(schema["function"]["name"], _sample_arguments(schema)) for schema in session.tools]
    for name, args in calls:
        session.call(name, copy.deepcopy(args))
    session.restore(snapshot)
    if session.snapshot() != snapshot:
        raise EnvCheckError(
            "after restore(snapshot), snapshot() differs from that snapshot: restore lost state"
        )
    if session.score() != score:
        raise EnvCheckError("restore() did not bring back the snapshot's score")
    for name, args in calls:
        after = session.call(name, copy.deepcopy(args))
        fresh = env.session(task_id).call(name, copy.deepcopy(args))
        if _frozen(after) != _frozen(fresh):
            raise EnvCheckError(f"after restore(), {name} answered differently from a fresh session")


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


class _Hostile:
    """An object whose every comparison, hash, repr and copy raises."""

    def _fail(self, *args: Any) -> Any:
        raise RuntimeError("hostile object")

    __eq__ = __ne__ = __hash__ = __repr__ = __str__ = __deepcopy__ = __iter__ = _fail  # type: ignore[assignment]

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() asks for it
        raise RuntimeError("hostile object")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _hostile_calls(tool: str, param: str) -> list[tuple[str, Any, Any]]:
    """(what, name, arguments) for a tool and one of its parameters: Python objects no JSON parser makes,
    and JSON text no parser reads."""
    loop: list[Any] = []
    loop.append(loop)
    lock = threading.Lock()
    return [
        ("a list nested 1,000 deep as arguments", tool, _nested(1000)),
        ("a list nested 1,000 deep as a value", tool, {param: _nested(1000)}),
        ("a list nested 1,000 deep as the tool name", _nested(1000), {}),
        ("JSON text nested 100,000 deep", tool, "[" * 100_000 + "]" * 100_000),
        ("a list that contains itself", tool, loop),
        ("a lock as arguments", tool, lock),
        ("a lock as a value", tool, {param: lock}),
        ("a generator as a value", tool, {param: (c for c in "x")}),
        ("an object whose __eq__, __hash__ and __repr__ raise, as the tool name", _Hostile(), {}),
        ("an object whose __eq__, __hash__ and __repr__ raise, as arguments", tool, _Hostile()),
        ("an object whose __eq__, __hash__ and __repr__ raise, as a value", tool, {param: _Hostile()}),
        ("a 5,000-digit integer as JSON text", tool, "9" * 5000),
        ("a 5,000-digit integer in a JSON object", tool, '{"' + param + '": ' + "9" * 5000 + "}"),
        ("a 5,000-digit integer as a value", tool, {param: 10**5000}),
        ("non-string keys", tool, {1: "x", None: "y", (param,): "z"}),
        ("bytes as arguments", tool, b'{"x": "y"}'),
        ("bytes as a value", tool, {param: b"\xff"}),
        ("bytes as the tool name", tool.encode(), {}),
    ]


def check_hostile_calls_never_raise(env: Environment, task_id: str) -> None:
    """Whatever Python object a call gets, it answers with a JSON-serialisable result and the session stays
    usable (`score()`, `snapshot()` and `restore()` still work)."""
    session = env.session(task_id)
    schema = session.tools[0] if session.tools else {}
    tool = schema.get("function", {}).get("name") or "no_such_tool"
    param = next(iter(schema.get("function", {}).get("parameters", {}).get("properties", {})), "x")
    for what, name, args in _hostile_calls(tool, param):
        try:
            result = session.call(name, args)
        except Exception as exc:
            raise EnvCheckError(
                f"call() raised {type(exc).__name__} on {what}: it must answer instead"
            ) from exc
        try:
            json.dumps(result)
        except Exception as exc:
            raise EnvCheckError(f"the result of a call with {what} is not JSON-serialisable: {exc}") from exc
        try:
            session.score()
            session.restore(session.snapshot())
        except Exception as exc:
            raise EnvCheckError(
                f"after a call with {what}, score(), snapshot() or restore() raised {type(exc).__name__}"
            ) from exc


def check_conversation_protocol(env: Environment, task_id: str) -> None:
    """What a rollout asks of a session besides tools: every result (an error included) reads as text,
    both sides can speak, the customer has words that end the conversation, and a conversation the customer
    ended is rewarded with its score."""
    session = env.session(task_id)
    for what in ("result_text", "say", "stop_tokens", "final_reward"):
        if not hasattr(session, what):
            raise EnvCheckError(f"the session has no `{what}`: a rollout needs it")
    tokens = session.stop_tokens
    if not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
        raise EnvCheckError(f"stop_tokens must be non-empty strings, got {tokens!r}")
    results = [session.call("no_such_tool", {})]
    results += [session.call(s["function"]["name"], _sample_arguments(s)) for s in session.tools[:3]]
    for result in results:
        text = session.result_text(result)
        if not isinstance(text, str):
            raise EnvCheckError(f"result_text({result!r:.80}) gave {type(text).__name__}, not text")
    try:
        session.say("user", "Hello.")
        session.say("assistant", "How can I help?")
        session.restore(session.snapshot())
    except Exception as exc:
        raise EnvCheckError(f"say() or a snapshot after it raised {type(exc).__name__}: {exc}") from exc
    if session.final_reward(True) != session.score():
        raise EnvCheckError("final_reward(ended=True) differs from score()")


CHECKS: tuple[Callable[[Environment, str], None], ...] = (
    check_fresh_sessions_are_equal,
    check_calls_are_deterministic,
    check_results_are_not_aliased,
    check_snapshot_restore,
    check_every_tool_accepts_a_sample_call,
    check_bad_calls_answer_not_raise,
    check_hostile_calls_never_raise,
    check_conversation_protocol,
)


def check_env(env: Environment, task_id: str) -> None:
    """Run every check on one task; raise `EnvCheckError` naming the first contract broken."""
    for check in CHECKS:
        check(env, task_id)
