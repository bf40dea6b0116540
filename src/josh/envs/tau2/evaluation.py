"""tau2's environment check (DB and ENV_ASSERTION) with its gold half computed once per task.

tau2's `EnvironmentEvaluator.calculate_reward` (tau2/evaluator/evaluator_env.py) does two things for every
score: it replays the trajectory on a fresh environment (the predicted side: set up as the task starts, then
every recorded tool call, each result checked verbatim) and it replays the task's gold actions on another
fresh environment (the gold side), then compares the two databases' hashes and runs the task's env
assertions on the predicted side. The gold side depends on the task alone, so `GoldCache` keeps its two
hashes; `environment_reward` is tau2's same sequence of steps with the cached gold side, and gives the same
`RewardInfo` (the equality is tested against tau2's own method).

What tau2 does differently at the edges is kept: a task with no evaluation criteria, or with neither
actions nor env assertions, gets tau2's own answer (no environment is built); a trajectory whose replay
raises (a recorded tool result that the replay does not reproduce) raises the same error, before the gold
side is looked at; a gold action that fails is skipped (tau2 logs it; its loguru output is disabled under
josh, see `paths.import_tau2`), and a gold side that raises is not kept, so the next score tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

EnvironmentConstructor = Callable[..., Any]


@dataclass(frozen=True)
class GoldState:
    """What tau2 compares a trajectory's end state with: the agent's and the user's database hashes after
    the task's gold actions."""

    agent_db_hash: str | None
    user_db_hash: str | None


def _start(task: Any) -> tuple[Any, Any, list[Any]]:
    """The task's initialization data, initialization actions and initial message history."""
    initial = task.initial_state
    if initial is None:
        return None, None, []
    return initial.initialization_data, initial.initialization_actions, initial.message_history or []


def gold_state(constructor: EnvironmentConstructor, task: Any) -> GoldState:
    """The gold side of tau2's environment check: a fresh environment set up as the task starts (its
    initial history replayed), the gold actions made on it (one that raises is skipped, as tau2 does),
    and its databases hashed."""
    data, actions, history = _start(task)
    environment = constructor()
    environment.set_state(initialization_data=data, initialization_actions=actions, message_history=history)
    for action in task.evaluation_criteria.actions or []:
        try:
            environment.make_tool_call(tool_name=action.name, requestor=action.requestor, **action.arguments)
        except Exception as exc:  # tau2 warns and goes on
            log.debug("tau2 task %s: gold action %s failed: %s", task.id, action.name, exc)
    return GoldState(environment.get_db_hash(), environment.get_user_db_hash())


class GoldCache:
    """Each task's `GoldState`, computed on first need and kept. Safe to share between threads: a task's
    gold side is computed once while other callers for that task wait; different tasks do not wait for
    each other. A computation that raises is not kept."""

    def __init__(self, constructor: EnvironmentConstructor) -> None:
        self._constructor = constructor
        self._lock = threading.Lock()
        self._states: dict[str, GoldState] = {}
        self._task_locks: dict[str, threading.Lock] = {}

    def get(self, task: Any) -> GoldState:
        """The gold state of `task` (a tau2 `Task`; keyed by its id)."""
        key = task.id
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                return state
            task_lock = self._task_locks.setdefault(key, threading.Lock())
        with task_lock:
            with self._lock:
                state = self._states.get(key)
            if state is None:
                state = gold_state(self._constructor, task)
                with self._lock:
                    self._states[key] = state
            return state

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)


def environment_reward(
    constructor: EnvironmentConstructor,
    task: Any,
    trajectory: list[Any],
    gold: Callable[[], GoldState],
    *,
    solo_mode: bool = False,
) -> Any:
    """tau2's `EnvironmentEvaluator.calculate_reward(constructor, task, trajectory, solo_mode)`, with the
    gold side from `gold()` (called only once the predicted side has replayed)."""
    from tau2.data_model.simulation import DBCheck, EnvAssertionCheck, RewardInfo
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator_env import EnvironmentEvaluator

    criteria = task.evaluation_criteria
    if criteria is None or (criteria.actions is None and criteria.env_assertions is None):
        # tau2's own answers for these (a note, no environment built)
        return EnvironmentEvaluator.calculate_reward(constructor, task, trajectory, solo_mode)
    data, actions, _ = _start(task)
    predicted = constructor(solo_mode=solo_mode)
    predicted.set_state(initialization_data=data, initialization_actions=actions, message_history=trajectory)
    reference = gold()
    agent_match = predicted.get_db_hash() == reference.agent_db_hash
    user_match = predicted.get_user_db_hash() == reference.user_db_hash
    db_match = agent_match and user_match
    db_reward = 1.0 if db_match else 0.0
    checks = []
    assertion_reward = 1.0
    for assertion in criteria.env_assertions or []:  # after the hashes: an assertion may call the tools
        met = predicted.run_env_assertion(assertion, raise_assertion_error=False)
        check = EnvAssertionCheck(env_assertion=assertion, met=met, reward=1.0 if met else 0.0)
        checks.append(check)
        assertion_reward *= check.reward
    reward = 1.0
    breakdown: dict[Any, float] = {}
    for basis, part in ((RewardType.DB, db_reward), (RewardType.ENV_ASSERTION, assertion_reward)):
        if basis in criteria.reward_basis:
            breakdown[basis] = part
            reward *= part
    return RewardInfo(
        reward=reward,
        db_check=DBCheck(db_match=db_match, db_reward=db_reward),
        env_assertions=checks,
        reward_basis=criteria.reward_basis,
        reward_breakdown=breakdown,
    )
