"""`check_gym_env`: the contracts of a gym env, in the spirit of Gymnasium's `env_checker` (which cannot run
on it: its observations are chats, not `gymnasium.spaces` values), plus josh's environment checker
(`josh.envs.checker.check_env`) on the task's environment underneath.

Checked: `reset` returns (observation, info) with the tools and goals, and the same seed gives the same start
(for a deterministic customer); observations are fresh copies; `step` returns the five values with their
types; a fork is independent of its parent both ways and earns the same rewards for the same actions; an
episode's rewards sum to its final score; a finished episode refuses another step.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from josh.envs.checker import EnvCheckError, check_env
from josh.errors import JoshError
from josh.gym.env import AsyncChatEnv, ChatEnv


def _frozen(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _a_tool_call(info: dict[str, Any]) -> dict[str, Any]:
    name = info["tools"][0]["function"]["name"] if info["tools"] else "no_such_tool"
    return {"content": "", "tool_calls": [{"id": "check_0", "type": "function",
                                           "function": {"name": name, "arguments": "{}"}}]}  # fmt: skip


def _check_step_values(values: Any) -> None:
    if not (isinstance(values, tuple) and len(values) == 5):
        raise EnvCheckError("step() must return (observation, reward, terminated, truncated, info)")
    observation, reward, terminated, truncated, info = values
    if not isinstance(observation, list) or not all(isinstance(m, dict) and "role" in m for m in observation):
        raise EnvCheckError("an observation must be a list of chat message dicts")
    if not isinstance(reward, float) or math.isnan(reward):
        raise EnvCheckError(f"a reward must be a float, got {reward!r}")
    if not isinstance(terminated, bool) or not isinstance(truncated, bool):
        raise EnvCheckError("terminated and truncated must be bools")
    if not isinstance(info, dict):
        raise EnvCheckError("info must be a dict")


def check_gym_env(
    env: ChatEnv | AsyncChatEnv, *, seed: int = 0, max_steps: int = 60, environment_checks: bool = True
) -> None:
    """Run every check on `env` (reset, stepped and forked here); raise `EnvCheckError` naming the first
    contract broken. The customer should be deterministic (replay or scripted) for the seed check.
    `environment_checks`: also run `josh.envs.checker.check_env` on the task's environment (a minute on
    tau2, whose own tests run it)."""
    if isinstance(env, AsyncChatEnv):
        env = ChatEnv(env)
    if environment_checks:
        check_env(env.inner.tasks.environment, env.task_id)
    first, info = env.reset(seed=seed)
    if not isinstance(first, list) or not first or not isinstance(info, dict):
        raise EnvCheckError("reset() must return (observation, info) with the chat so far")
    for key in ("tools", "goals", "system_prompt", "task_id"):
        if key not in info:
            raise EnvCheckError(f"reset()'s info has no {key!r}")
    again, _ = env.reset(seed=seed)
    if _frozen(first) != _frozen(again):
        raise EnvCheckError("two resets with one seed started differently")
    again.append({"role": "user", "content": "tampered"})
    if len(env.observation()) != len(first):
        raise EnvCheckError("changing an observation changed the env: observations must be copies")

    parent = env.fork()
    child = env.fork()
    before, calls_before = _frozen(parent.observation()), len(parent.session.calls)
    call = _a_tool_call(info)
    stepped = child.step(copy.deepcopy(call))
    _check_step_values(stepped)
    if _frozen(parent.observation()) != before:
        raise EnvCheckError("stepping a fork changed its parent's observation")
    if len(parent.session.calls) != calls_before:
        raise EnvCheckError("stepping a fork ran a call on its parent's session")
    twin = parent.step(copy.deepcopy(call))
    if _frozen(twin[0]) != _frozen(stepped[0]) or twin[1] != stepped[1]:
        raise EnvCheckError("a fork and its parent answered one action differently")

    total, info, done = 0.0, {}, False
    for _ in range(max_steps):
        observation, reward, terminated, truncated, info = env.step("Is there anything else I can do?")
        total += reward
        if terminated or truncated:
            done = True
            break
    if not done:
        raise EnvCheckError(f"the episode did not end within {max_steps} spoken steps")
    if "score" not in info or not math.isclose(total, info["score"], abs_tol=1e-9):
        raise EnvCheckError(f"the rewards sum to {total}, the final score is {info.get('score')}")
    try:
        env.step("hello")
    except JoshError:
        pass
    else:
        raise EnvCheckError("a finished episode accepted another step")
