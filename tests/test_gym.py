"""`josh.gym`: a task as a Gymnasium-style env with the customer inside (reset / step / fork, sync and async)."""

from __future__ import annotations

import asyncio
import io
import json
import math
from typing import Any

import pytest

import josh.gym as gym
from josh.cli.score_cmd import score_stream
from josh.envs.checker import EnvCheckError
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError

pytestmark = pytest.mark.data


def _calls_message(calls: list[tuple[str, Any]], prefix: str = "c") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": f"{prefix}{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(calls)
        ],
    }


def _josh_score(env: ToolWOZEnvironment, lines: list[dict[str, Any]]) -> list[float]:
    """What `josh score` gives these trajectories (its scorer, in-process)."""
    raw = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
    sink = io.BytesIO()
    score_stream(env, raw, sink, say=lambda _: None)
    return [json.loads(line)["reward"] for line in sink.getvalue().decode().splitlines()]


def _play(env: gym.ChatEnv, calls: list[tuple[str, Any]], *, one_message: bool) -> tuple[list[float], dict]:
    """Reset, make `calls` (in one message, or one a message), then speak until the episode ends."""
    env.reset(seed=0)
    rewards = []
    batches = [calls] if one_message else [[call] for call in calls]
    info: dict[str, Any] = {}
    for i, batch in enumerate(batches):
        _, reward, terminated, truncated, info = env.step(_calls_message(batch, f"s{i}_"))
        rewards.append(reward)
        assert not (terminated or truncated)
    for _ in range(env.inner.max_turns):
        _, reward, terminated, truncated, info = env.step("Is there anything else I can help you with?")
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info
    raise AssertionError("the episode did not end")


def test_goal_calls_earn_in_sum_what_josh_score_gives(toolwoz_env: ToolWOZEnvironment) -> None:
    """The acceptance test of issue 21: 20 ToolWOZ test tasks, each task's goal calls (as tool calls) and a
    broken variant of them; the gym's rewards sum to `josh score`'s reward of the same calls."""
    tasks = gym.gym_tasks("toolwoz", user="replay", environment=toolwoz_env)
    ids = toolwoz_env.task_ids("test")[:20]
    trajectories, played = [], []
    for n, task_id in enumerate(ids):
        goals = [(g.name, g.arguments) for g in toolwoz_env.task(task_id).goal_calls]
        # every other task: the last goal call with a wrong argument, and a call of no tool
        calls = goals if n % 2 == 0 else [*goals[:-1], (goals[-1][0], {"people": "99"}), ("no_tool", {})]
        env = gym.ChatEnv(gym.make_async("toolwoz", task_id=task_id, tasks=tasks, max_tool_rounds=None))
        rewards, info = _play(env, calls, one_message=n % 4 == 1)
        assert all(r >= 0 for r in rewards)  # ToolWOZ's progress only grows
        assert info["score"] == env.session.score()
        played.append(math.fsum(rewards))
        trajectories.append({"task_id": task_id, "calls": [{"name": c, "arguments": a} for c, a in calls]})
    scored = _josh_score(toolwoz_env, trajectories)
    assert played == pytest.approx(scored, abs=1e-12)
    assert sum(scored) > 5  # goal calls do earn: the comparison is not 0 == 0


def test_forks_are_independent(toolwoz_env: ToolWOZEnvironment) -> None:
    env = gym.make("toolwoz", task_id="MUL0003", user="replay", max_tool_rounds=None)
    env.reset()
    goals = [(g.name, g.arguments) for g in toolwoz_env.task("MUL0003").goal_calls]
    env.step(_calls_message(goals[:1]))
    fork = env.fork()
    observation, calls, progress = env.observation(), list(env.session.calls), env.session.score()
    # mutate the fork: calls (one books something), a spoken turn, the end of its episode
    fork.step(_calls_message(goals[1:]))
    fork.step("Anything else?")
    assert env.observation() == observation
    assert env.session.calls == calls and env.session.score() == progress
    assert not env.done and fork.session.score() > progress
    # the parent earns, for the same actions, what the fork earned
    _, fork_reward, *_ = fork.fork().step(_calls_message([("search_hotel", {"area": "north"})]))
    _, reward, *_ = env.step(_calls_message(goals[1:]))
    assert reward == fork.rewards[1] > 0
    assert fork_reward == 0.0
    # and an observation handed out is a copy
    env.observation()[0]["content"] = "tampered"
    assert env.observation()[0]["content"] != "tampered"


def test_the_env_passes_the_checkers(toolwoz_env: ToolWOZEnvironment) -> None:
    """josh's environment checker on the session underneath, and the gym checks, for both customers that
    need no model."""
    for user in ("replay", "scripted"):
        gym.check_gym_env(gym.make("toolwoz", task_id="MUL0003", user=user))


def test_the_checker_catches_a_fork_that_shares_its_session(toolwoz_env: ToolWOZEnvironment) -> None:
    env = gym.make("toolwoz", task_id="MUL0003", user="replay")

    class Sharing(gym.AsyncChatEnv):
        def fork(self) -> gym.AsyncChatEnv:
            clone = super().fork()
            clone._episode.session = self._episode.session  # type: ignore[union-attr]
            return clone

    env.inner.__class__ = Sharing
    with pytest.raises(EnvCheckError, match="parent's session"):
        gym.check_gym_env(env)


def test_the_scripted_customer_plays_the_task_and_the_episode_ends(toolwoz_env: ToolWOZEnvironment) -> None:
    """A whole episode with josh's scripted customer: the goal calls earn the score, the customer hangs
    up (terminated), and a finished episode refuses another step."""
    env = gym.make("toolwoz", task_id="MUL0003", user="scripted", max_tool_rounds=None)
    observation, info = env.reset()
    assert observation[0]["role"] == "user" and info["goals"] == [g.name for g in env.session.task.goal_calls]
    assert {t["function"]["name"] for t in info["tools"]} >= {"search_hotel", "book_hotel"}
    total = 0.0
    for call in env.session.task.goal_calls:
        total += env.step(_calls_message([(call.name, call.arguments)]))[1]
    for _ in range(10):
        _, reward, terminated, truncated, info = env.step("Everything you asked for is taken care of.")
        total += reward
        if terminated or truncated:
            break
    assert terminated and info["termination"] == "user_ended"
    assert total == pytest.approx(info["score"]) and info["score"] == env.session.score()
    with pytest.raises(JoshError, match="episode is over"):
        env.step("hello")


def test_truncation_at_max_turns_and_tool_rounds(toolwoz_env: ToolWOZEnvironment) -> None:
    env = gym.make("toolwoz", task_id="MUL0003", user="replay", max_turns=3, max_tool_rounds=2)
    env.reset()
    assert env.step("Hello")[2:4] == (False, False)  # 3 messages: the customer's, this, its answer
    *_, terminated, truncated, info = env.step("And?")  # the 4th message reaches max_turns
    assert (terminated, truncated, info["termination"]) == (False, True, "max_turns")
    env.reset()
    env.step(_calls_message([("search_hotel", {})]))
    *_, terminated, truncated, info = env.step(_calls_message([("search_hotel", {})]))
    assert (terminated, truncated, info["termination"]) == (False, True, "tool_rounds")


def test_async_envs_run_concurrently_and_match_the_sync_ones(toolwoz_env: ToolWOZEnvironment) -> None:
    tasks = gym.gym_tasks("toolwoz", user="scripted", environment=toolwoz_env)
    ids = toolwoz_env.task_ids("test")[:4]

    async def rollout(task_id: str) -> list[float]:
        env = gym.make_async("toolwoz", task_id=task_id, tasks=tasks, max_tool_rounds=None)
        await env.reset()
        rewards = []
        for call in env.session.task.goal_calls:
            rewards.append((await env.step(_calls_message([(call.name, call.arguments)])))[1])
        while not env.done:
            rewards.append((await env.step("Everything you asked for is taken care of."))[1])
        return rewards

    async def all_of_them() -> list[list[float]]:
        return list(await asyncio.gather(*(rollout(t) for t in ids)))

    concurrent = asyncio.run(all_of_them())
    assert concurrent == [asyncio.run(rollout(t)) for t in ids]
    with pytest.raises(JoshError, match="make_async"):  # a sync env inside an event loop says what to use

        async def inside() -> None:
            gym.make("toolwoz", task_id=ids[0], user="replay").reset()

        asyncio.run(inside())


def test_bad_options_are_one_clear_error(toolwoz_env: ToolWOZEnvironment) -> None:
    with pytest.raises(JoshError, match="unknown benchmark 'toolwozz'"):
        gym.make("toolwozz")
    with pytest.raises(JoshError, match="unknown user"):
        gym.make("toolwoz", user="robot")
    with pytest.raises(JoshError, match="pass user_model="):
        gym.make("toolwoz", task_id="MUL0003", user="goal").reset()
    with pytest.raises(JoshError, match="unknown ToolWOZ task"):
        gym.make("toolwoz", task_id="NOPE", user="replay")
    with pytest.raises(JoshError, match="call reset"):
        gym.make("toolwoz", task_id="MUL0003", user="replay").step("hi")
    with pytest.raises(JoshError, match="assistant message"):
        env = gym.make("toolwoz", task_id="MUL0003", user="replay")
        env.reset()
        env.step(42)  # type: ignore[arg-type]


def test_the_readme_gym_snippet_runs(toolwoz_env: ToolWOZEnvironment, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_readme import README

    section = README.split("## From RL stacks (Gym, TRL)", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip()  # the customer answered
