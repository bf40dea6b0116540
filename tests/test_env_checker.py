"""Every registered environment passes `check_env`, and the checker catches a broken one."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest

from josh.envs.checker import (
    EnvCheckError,
    _hostile_calls,
    _sample_arguments,
    check_bad_calls_answer_not_raise,
    check_calls_are_deterministic,
    check_env,
    check_every_tool_accepts_a_sample_call,
    check_fresh_sessions_are_equal,
    check_hostile_calls_never_raise,
    check_results_are_not_aliased,
    check_snapshot_restore,
)
from josh.envs.toolwoz import ToolWOZEnvironment


@pytest.mark.data
@pytest.mark.parametrize("task_id", ["MUL0003", "MUL0986", "SNG01152", "PMUL0002"])
def test_toolwoz_passes_the_checker(toolwoz_env: ToolWOZEnvironment, task_id: str) -> None:
    check_env(toolwoz_env, task_id)


class _LeakySession:
    def __init__(self, shared: Any) -> None:
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

    def __init__(self, shared: Any = None) -> None:
        self.shared: Any = {"name": "acorn"} if shared is None else shared

    def session(self, task_id: str) -> _LeakySession:
        return _LeakySession(self.shared)


@pytest.mark.parametrize("kind", ["a dict", "a list of dicts"])
def test_the_checker_catches_aliased_results(kind: str) -> None:
    shared = {"name": "acorn"} if kind == "a dict" else [{"name": "acorn"}]  # fresh: the checker tampers
    with pytest.raises(EnvCheckError) as info:
        check_env(_LeakyEnv(shared), "any")
    assert str(info.value) == "mutating the result of lookup changed later results: results share state"


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

    stop_tokens = ("BYE",)

    def result_text(self, result: Any) -> str:
        return json.dumps(result)

    def say(self, role: str, content: Any) -> None:
        pass

    def final_reward(self, ended: bool) -> float:
        return self.score()

    opening: str | None = None


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


class _SilentSession(_ToySession):
    def __getattribute__(self, name: str) -> Any:
        if name == "say":  # the bug: the rollout cannot record the conversation's messages
            raise AttributeError(name)
        return super().__getattribute__(name)


class _RawResultSession(_ToySession):
    def result_text(self, result: Any) -> str:
        return result  # type: ignore[no-any-return]  # the bug: a dict is not text


class _UnserialisableSession(_ToySession):
    def call(self, name: Any, arguments: Any = None) -> Any:
        result = super().call(name, arguments)
        return {"echo": arguments} if type(arguments) is bytes else result  # the bug: bytes in a result


def test_a_correct_toy_env_passes() -> None:
    check_env(_ToyEnv(), "any")


@pytest.mark.parametrize(
    ("session_class", "message"),
    [
        (
            _NoOpRestoreSession,
            "^after restore\\(snapshot\\), snapshot\\(\\) differs from that snapshot: restore lost state$",
        ),
        (
            _CopyingSession,
            "^call\\(\\) raised RecursionError on a list nested 1,000 deep as arguments: it must answer instead$",
        ),
        (_UnserialisableSession, "result of a call with bytes as arguments is not JSON-serialisable"),
        (_SilentSession, "^the session has no `say`: a rollout needs it$"),
        (_RawResultSession, "^result_text\\(\\{'answer': 42\\}\\) gave dict, not text$"),
    ],
)
def test_the_checker_catches_a_broken_contract(session_class: type, message: str) -> None:
    env = _ToyEnv()
    env.session_class = session_class
    with pytest.raises(EnvCheckError, match=message):
        check_env(env, "any")


def test_sample_arguments_follow_the_schema() -> None:
    schema = {"function": {"name": "f", "parameters": {"properties": {
        "a": {"enum": ["p", "q"]}, "b": {"type": "string"}, "c": {"type": "integer"}, "d": {},
    }}}}  # fmt: skip
    # the first enum value, "x" for strings (the default type), 1 for anything else
    assert _sample_arguments(schema) == {"a": "p", "b": "x", "c": 1, "d": "x"}
    assert _sample_arguments({}) == {} and _sample_arguments({"function": {"name": "f"}}) == {}


class _Broken(_ToySession):
    """The toy session with one contract broken by each subclass below."""


class _AliasedToolsSession(_Broken):
    def __init__(self) -> None:
        super().__init__()
        self._tools = super().tools

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self._tools  # the caller's copy is the session's own


class _ScoreNotRestoredSession(_Broken):
    def call(self, name: Any, arguments: Any = None) -> Any:
        self.bonus = 1.0  # state outside the snapshot
        return super().call(name, arguments)

    def score(self) -> float:
        return getattr(self, "bonus", 0.0)


class _AnswersNotRestoredSession(_Broken):
    def call(self, name: Any, arguments: Any = None) -> Any:
        self.seen = getattr(self, "seen", 0) + 1  # state outside the snapshot, and not in the score
        return {"answer": self.seen} if name == "lookup" else "ERROR: unknown tool"


class _RaisingToolSession(_Broken):
    def call(self, name: Any, arguments: Any = None) -> Any:
        if name == "lookup" and arguments == {"q": "x"}:
            raise ValueError("bad sample")
        return super().call(name, arguments)


class _NamelessToolSession(_Broken):
    @property
    def tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"parameters": {}}}]


class _RaisingOnUnknownSession(_Broken):
    def call(self, name: Any, arguments: Any = None) -> Any:
        if name != "lookup":
            raise KeyError(name)
        return super().call(name, arguments)


class _AnswersUnknownSession(_Broken):
    def call(self, name: Any, arguments: Any = None) -> Any:
        return {"answer": 42}


class _UnusableAfterHostileSession(_Broken):
    def call(self, name: Any, arguments: Any = None) -> Any:
        if type(arguments) is list:
            self.broken = True
        return super().call(name, arguments) if type(name) is str else "ERROR: unknown tool"

    def score(self) -> float:
        if getattr(self, "broken", False):
            raise RuntimeError("broken")
        return 0.0


@pytest.mark.parametrize(
    ("check", "session_class", "message"),
    [
        (check_results_are_not_aliased, _AliasedToolsSession, "mutating `tools` changed the session's tools"),
        (check_snapshot_restore, _ScoreNotRestoredSession, "restore() did not bring back the snapshot's score"),
        (check_snapshot_restore, _AnswersNotRestoredSession,
         "after restore(), lookup answered differently from a fresh session"),
        (check_every_tool_accepts_a_sample_call, _RaisingToolSession,
         "lookup raised ValueError on a call its schema allows: bad sample"),
        (check_every_tool_accepts_a_sample_call, _NamelessToolSession,
         "tool schema without a function name: {'type': 'function', 'function': {'parameters': {}}}"),
        (check_bad_calls_answer_not_raise, _RaisingOnUnknownSession,
         "call('no_such_tool', {}) raised KeyError instead of an error result"),
        (check_bad_calls_answer_not_raise, _AnswersUnknownSession,
         "call('no_such_tool', {}) should give an error result, gave {'answer': 42}"),
        (check_hostile_calls_never_raise, _UnusableAfterHostileSession,
         "after a call with a list nested 1,000 deep as arguments, score(), snapshot() or restore() raised "
         "RuntimeError"),
    ],
)  # fmt: skip
def test_each_check_names_the_contract_broken(check: Any, session_class: type, message: str) -> None:
    env = _ToyEnv()
    env.session_class = session_class
    with pytest.raises(EnvCheckError) as info:
        check(env, "any")
    assert str(info.value) == message
    env.session_class = _ToySession
    check(env, "any")  # the correct toy passes the same check


class _CountingEnv:
    """Every new session differs from the last: its score, or what `lookup` answers."""

    def __init__(self, what: str) -> None:
        self.what, self.made = what, 0

    def session(self, task_id: str) -> Any:
        self.made += 1
        session, made = _ToySession(), self.made
        if self.what == "score":
            session.score = lambda: float(made)  # type: ignore[method-assign]
        else:
            session.call = lambda name, arguments=None: {"answer": made}  # type: ignore[method-assign]
        return session


def test_fresh_sessions_and_calls_must_be_the_same_every_time() -> None:
    with pytest.raises(EnvCheckError, match="^two fresh sessions of T1 differ$"):
        check_fresh_sessions_are_equal(_CountingEnv("score"), "T1")
    with pytest.raises(EnvCheckError) as info:
        check_calls_are_deterministic(_CountingEnv("call"), "T1")
    assert str(info.value) == "lookup({'q': 'x'}) gave different results in two fresh sessions of T1"


def test_the_hostile_calls_are_what_their_labels_say() -> None:
    cases = {what: (name, args) for what, name, args in _hostile_calls("lookup", "q")}
    assert len(cases) == 18

    def depth(value: Any) -> int:
        levels = 0
        while isinstance(value, list):
            value, levels = value[0], levels + 1
        return levels

    assert depth(cases["a list nested 1,000 deep as arguments"][1]) == 1000
    assert depth(cases["a list nested 1,000 deep as a value"][1]["q"]) == 1000
    assert depth(cases["a list nested 1,000 deep as the tool name"][0]) == 1000
    loop = cases["a list that contains itself"][1]
    assert loop[0] is loop
    assert type(cases["a lock as arguments"][1]) is type(threading.Lock())
    assert type(cases["a lock as a value"][1]["q"]) is type(threading.Lock())
    with pytest.raises(RuntimeError, match="^hostile object$"):
        repr(cases["an object whose __eq__, __hash__ and __repr__ raise, as arguments"][1])
    assert list(cases) == [
        "a list nested 1,000 deep as arguments", "a list nested 1,000 deep as a value",
        "a list nested 1,000 deep as the tool name", "JSON text nested 100,000 deep", "a list that contains itself",
        "a lock as arguments", "a lock as a value", "a generator as a value",
        "an object whose __eq__, __hash__ and __repr__ raise, as the tool name",
        "an object whose __eq__, __hash__ and __repr__ raise, as arguments",
        "an object whose __eq__, __hash__ and __repr__ raise, as a value", "a 5,000-digit integer as JSON text",
        "a 5,000-digit integer in a JSON object", "a 5,000-digit integer as a value", "non-string keys",
        "bytes as arguments", "bytes as a value", "bytes as the tool name",
    ]  # fmt: skip
    assert cases["JSON text nested 100,000 deep"][1] == "[" * 100_000 + "]" * 100_000
    assert list(cases["a generator as a value"][1]["q"]) == ["x"]
    assert cases["a 5,000-digit integer as JSON text"][1] == "9" * 5000
    assert cases["a 5,000-digit integer in a JSON object"][1] == '{"q": ' + "9" * 5000 + "}"
    assert cases["a 5,000-digit integer as a value"][1] == {"q": 10**5000}
    assert cases["bytes as arguments"][1] == b'{"x": "y"}' and cases["bytes as a value"][1] == {"q": b"\xff"}
    assert cases["bytes as the tool name"] == (b"lookup", {})
    assert cases["non-string keys"][1] == {1: "x", None: "y", ("q",): "z"}


class _FragileValueSession(_Broken):
    """Crashes only when its own tool gets a non-string value for its own parameter."""

    def call(self, name: Any, arguments: Any = None) -> Any:
        if (
            name == "lookup"
            and type(arguments) is dict
            and "q" in arguments
            and type(arguments["q"]) is not str
        ):
            raise TypeError("q must be text")
        return super().call(name, arguments) if type(name) is str else "ERROR: unknown tool"


class _NoToolsSession(_Broken):
    @property
    def tools(self) -> list[dict[str, Any]]:
        return []


class _NoFunctionSession(_Broken):
    @property
    def tools(self) -> list[dict[str, Any]]:
        return [{"type": "function"}]


def test_hostile_values_go_to_the_first_tools_first_parameter() -> None:
    env = _ToyEnv()
    env.session_class = _FragileValueSession
    with pytest.raises(EnvCheckError) as info:
        check_hostile_calls_never_raise(env, "any")
    assert (
        str(info.value)
        == "call() raised TypeError on a list nested 1,000 deep as a value: it must answer instead"
    )
    env.session_class = _NoToolsSession  # no tools: the probes go to an unknown tool, and nothing breaks
    check_hostile_calls_never_raise(env, "any")
    env.session_class = _NoFunctionSession
    with pytest.raises(EnvCheckError) as info:
        check_every_tool_accepts_a_sample_call(env, "any")
    assert str(info.value) == "tool schema without a function name: {'type': 'function'}"


class _KeyOrderEnv:
    """Equal results whose keys come in another order in every other session, holding a set: not a bug."""

    def __init__(self) -> None:
        self.made = 0

    def session(self, task_id: str) -> Any:
        self.made += 1
        session, flip = _ToySession(), self.made % 2 == 0
        answer = {"b": 2, "a": {1}} if flip else {"a": {1}, "b": 2}
        session.call = lambda name, arguments=None: dict(answer)  # type: ignore[method-assign]
        return session


def test_results_are_compared_as_json_whatever_their_key_order() -> None:
    check_calls_are_deterministic(_KeyOrderEnv(), "T1")  # sorted keys; the set written with repr()
