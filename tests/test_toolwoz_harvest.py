"""`harvest`: JOSH trees of real ToolWOZ train tasks with the in-process scripted backend, in a real run file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from josh.benchmarks.endpoints import Endpoints, open_endpoints
from josh.benchmarks.toolwoz import setups as toolwoz_setups
from josh.benchmarks.toolwoz.config import ToolWOZHarvestConfig
from josh.benchmarks.toolwoz.harvest import harvest
from josh.cli.options import config_for_file, resolve
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError
from josh.llm.base import EndpointError, RetryableLLMError
from josh.mock.scripted_backend import scripted_model
from josh.runner import open_run, read_run
from josh.search import TreeRecord
from josh.types import AssistantMessage, Message

pytestmark = pytest.mark.data


def config(**options: Any) -> ToolWOZHarvestConfig:
    return ToolWOZHarvestConfig.model_validate({"model": "scripted", **options})


def run(
    env: ToolWOZEnvironment,
    cfg: ToolWOZHarvestConfig,
    path: Path,
    endpoints: Endpoints | None = None,
    *,
    resume: bool = False,
    retry_errors: bool = False,
) -> tuple[int, list[dict[str, Any]]]:
    writer = open_run(
        path, config={}, config_hash=cfg.config_hash(), seed=cfg.seed, resume=resume, command="t"
    )
    endpoints = endpoints or open_endpoints(cfg, env)

    async def go() -> int:
        try:
            return await harvest(cfg, env, endpoints, writer, retry_errors=retry_errors)
        finally:
            await endpoints.aclose()

    try:
        count = asyncio.run(go())
    finally:
        writer.close("success")
    return count, read_run(path).records


def children(record: dict[str, Any]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for node in record["nodes"]:
        if node["parent"] is not None:
            found.setdefault(node["parent"], []).append(node["id"])
    return found


def test_an_oracle_tree_collapses_twice(toolwoz_env: ToolWOZEnvironment, tmp_path: Path) -> None:
    """MUL0001 has 4 goal calls; the oracle (no mistakes) makes two a turn. Step 1: both children of the root
    meet the hotel's two; the left one becomes the root. Step 2: it splits, both children meet the rest."""
    count, [tree] = run(toolwoz_env, config(task=["MUL0001"]), tmp_path / "trees.jsonl")
    assert count == 1 and tree["status"] == "success" and tree["task_id"] == "MUL0001"
    assert children(tree) == {0: [1, 2], 1: [3, 4]}
    assert [n["id"] for n in tree["nodes"] if n["golden"]] == [0, 1, 3]
    assert [n["id"] for n in tree["nodes"] if n["successful"]] == [0, 1, 2, 3, 4]
    hotel, restaurant = ["search_hotel", "book_hotel"], ["search_restaurant", "book_restaurant"]
    assert [n["reward_events"] for n in tree["nodes"]] == [[], hotel, hotel, restaurant, restaurant]
    assert tree["golden_reward_events"] == hotel + restaurant and tree["reward"] == 1.0
    assert tree["reward_events"] == hotel + hotel + restaurant + restaurant
    assert (tree["steps"], tree["ended"], tree["goal_calls"]) == (2, "all_goals", hotel + restaurant)
    # Node 0: the customer's opening. Node 1: two calls with their results, the reply, the customer's answer.
    roles = [[m["role"] for m in n["messages"]] for n in tree["nodes"]]
    assert roles[0] == ["user"]
    assert roles[1] == ["assistant", "user", "assistant", "user", "assistant", "user"]  # ReAct: APIRETURN
    assert roles[2] == roles[3] == ["assistant", "user", "assistant", "user", "assistant"]  # no answer after
    assert tree["nodes"][1]["messages"][1]["content"].startswith("APIRETURN")
    assert "APICALL" in tree["system_prompt"] and tree["tools"] == [] and tree["agent"] == "react"
    # Agent calls a step: one shared call with n=2, then two each (second call, reply). Customer: the
    # opening, then one answer on the new root after step 1 (none after the last step).
    calls = [(c["role"], c["n"]) for c in tree["model_calls"]]
    assert sorted(calls) == sorted([("agent", 2)] * 2 + [("agent", 1)] * 8 + [("user", 1)] * 2)
    assert tree["agent_usage"]["prompt_tokens"] == sum(
        c["prompt_tokens"] for c in tree["model_calls"] if c["role"] == "agent"
    )
    # What the run file holds reads back as the record it was written from.
    assert TreeRecord.model_validate(tree).model_dump(mode="json") == tree


def test_without_n_each_sibling_makes_its_own_first_call(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path
) -> None:
    _, [tree] = run(toolwoz_env, config(task=["MUL0001"], use_n=False), tmp_path / "trees.jsonl")
    calls = [(c["role"], c["n"]) for c in tree["model_calls"]]
    assert calls.count(("agent", 1)) == 12 and ("agent", 2) not in calls
    assert tree["reward"] == 1.0 and children(tree) == {0: [1, 2], 1: [3, 4]}


def test_function_calling_trees_carry_the_tools(toolwoz_env: ToolWOZEnvironment, tmp_path: Path) -> None:
    _, [tree] = run(toolwoz_env, config(task=["MUL0001"], agent="fc"), tmp_path / "trees.jsonl")
    assert tree["agent"] == "fc" and [t["function"]["name"] for t in tree["tools"]][:2] == [
        "book_restaurant",
        "search_restaurant",
    ]
    assert [m["role"] for m in tree["nodes"][1]["messages"]][:2] == ["assistant", "tool"]
    assert tree["reward"] == 1.0


def check_tree(tree: dict[str, Any]) -> None:
    """What every tree must satisfy, whatever the samples were."""
    nodes = tree["nodes"]
    assert [n["id"] for n in nodes] == list(range(len(nodes))) and nodes[0]["parent"] is None
    assert all(n["parent"] < n["id"] for n in nodes[1:])
    assert all(len(kids) == 2 for kids in children(tree).values())  # every split is in two
    golden = [n for n in nodes if n["golden"]]
    for node in golden[1:]:  # one chain down from the first root
        assert nodes[node["parent"]]["golden"]
    assert len({n["parent"] for n in golden}) == len(golden)
    for node in nodes[1:]:
        if node["successful"]:
            assert nodes[node["parent"]]["successful"]
    assert tree["golden_reward_events"] == [e for n in golden for e in n["reward_events"]]
    assert tree["reward"] == len(tree["golden_reward_events"]) / len(tree["goal_calls"])
    assert set(tree["golden_reward_events"]) <= set(tree["goal_calls"])


@pytest.mark.parametrize("use_n", [True, False])
def test_a_dry_run_with_mistakes_branches(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path, use_n: bool
) -> None:
    cfg = config(limit=12, mock_mistake_rate=0.3, use_n=use_n)
    count, trees = run(toolwoz_env, cfg, tmp_path / "trees.jsonl")
    assert count == 12 and sorted(t["task_id"] for t in trees) == toolwoz_env.task_ids("train")[:12]
    for tree in trees:
        check_tree(tree)
    # Siblings sampled apart: some pruned branch met less than its golden sibling, some tree lost a goal.
    assert any(
        a["reward_events"] != b["reward_events"]
        for t in trees
        for a, b in [(t["nodes"][i], t["nodes"][j]) for i, j in (kids for kids in children(t).values())]
    )
    assert any(t["reward"] < 1.0 for t in trees) and any(t["reward"] == 1.0 for t in trees)
    assert any(n["over"] for t in trees for n in t["nodes"])
    # Resume: nothing left to do.
    count, again = run(toolwoz_env, cfg, tmp_path / "trees.jsonl", resume=True)
    assert count == 0 and len(again) == 12


class FailingAgentCalls:
    """The scripted backend, except that the agent's calls with n=1 fail after their retries."""

    def __init__(self, env: ToolWOZEnvironment, error: BaseException) -> None:
        self.inner = scripted_model(env)
        self.name = "failing"
        self.error = error

    async def chat(
        self, messages: Sequence[Message], *, n: int = 1, **options: Any
    ) -> list[AssistantMessage]:
        if n == 1:
            raise self.error
        return await self.inner.chat(messages, n=n, **options)

    async def aclose(self) -> None:
        return None


def test_a_leaf_whose_model_failed_is_over_but_still_rewarded(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path
) -> None:
    """Step 1: the shared first call works (both children search the hotel), their second calls fail: both
    leaves are over, both rewarded; the left one is credited (1 of 4 goal calls) and nothing is left."""
    failing = FailingAgentCalls(toolwoz_env, RetryableLLMError("gave up after 6 attempts"))
    endpoints = Endpoints(failing, scripted_model(toolwoz_env))  # type: ignore[arg-type]
    _, [tree] = run(toolwoz_env, config(task=["MUL0001"]), tmp_path / "t.jsonl", endpoints)
    assert tree["status"] == "success" and tree["reward"] == 0.25 and tree["ended"] == "no_live_leaf"
    one, two = tree["nodes"][1], tree["nodes"][2]
    assert one["over"] and two["over"] and one["golden"] and not two["golden"] and two["successful"]
    assert one["reward_events"] == two["reward_events"] == ["search_hotel"]
    assert "the agent's turn failed: RetryableLLMError: gave up" in one["notes"][0]
    assert [m["role"] for m in one["messages"]] == ["assistant", "user"]  # the call that ran, its result
    assert any("node 1: the agent's turn failed" in note for note in tree["notes"])


def test_an_unusable_endpoint_stops_the_harvest_and_records_nothing(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path
) -> None:
    failing = FailingAgentCalls(toolwoz_env, EndpointError("the key was rejected"))
    endpoints = Endpoints(failing, scripted_model(toolwoz_env))  # type: ignore[arg-type]
    with pytest.raises(EndpointError, match="the key was rejected"):
        run(toolwoz_env, config(limit=3), tmp_path / "t.jsonl", endpoints)
    assert read_run(tmp_path / "t.jsonl").records == []


def test_a_zero_temperature_is_refused(toolwoz_env: ToolWOZEnvironment, tmp_path: Path) -> None:
    with pytest.raises(JoshError, match="--temperature: JOSH samples the agent"):
        resolve(ToolWOZHarvestConfig, {"temperature": 0.0})
    unchecked = config(limit=1).model_copy(update={"temperature": 0.0})
    with pytest.raises(JoshError, match="--temperature 0.0: JOSH samples the agent"):
        run(toolwoz_env, unchecked, tmp_path / "t.jsonl")


def test_beam_1_samples_one_conversation_a_tree(toolwoz_env: ToolWOZEnvironment, tmp_path: Path) -> None:
    """Beam 1 never branches: each tree is one sampled conversation (flat sampling, as RFT draws), and the
    trials of a task differ (trial t samples with seed + t)."""
    count, records = run(
        toolwoz_env, config(limit=4, beam=1, trials=4, mock_mistake_rate=0.5), tmp_path / "t.jsonl"
    )
    assert count == 16
    trees = [TreeRecord.model_validate(r) for r in records]
    assert all(len(t.nodes) == 1 and t.nodes[0].golden == bool(t.reward) for t in trees)
    assert len({t.reward for t in trees}) > 1


def test_the_harvest_defaults() -> None:
    cfg = ToolWOZHarvestConfig()
    assert (cfg.split, cfg.temperature, cfg.user_temperature) == ("train", 1.0, 0.0)
    assert (cfg.beam, cfg.max_steps, cfg.use_n) == (8, 15, True)
    with pytest.raises(JoshError, match="--beam"):
        resolve(ToolWOZHarvestConfig, {"beam": 0})
    assert "max_turns" not in ToolWOZHarvestConfig.model_fields  # a tree's limit is --max-steps
    saved = config_for_file(ToolWOZHarvestConfig())  # what a run writes beside its results, fed back
    assert (
        resolve(ToolWOZHarvestConfig, {k.replace("-", "_"): v for k, v in saved.items()})
        == ToolWOZHarvestConfig()
    )


def test_a_bug_fails_its_tree_only(toolwoz_env: ToolWOZEnvironment, tmp_path: Path) -> None:
    failing = FailingAgentCalls(toolwoz_env, ZeroDivisionError("a bug"))
    endpoints = Endpoints(failing, scripted_model(toolwoz_env))  # type: ignore[arg-type]
    count, trees = run(toolwoz_env, config(limit=2), tmp_path / "t.jsonl", endpoints)
    assert count == 2 and len(trees) == 2
    for tree in trees:
        assert tree["status"] == "error" and tree["reward"] is None and tree["nodes"] == []
        assert tree["error"] == "ZeroDivisionError: a bug"
    count, _ = run(toolwoz_env, config(limit=2), tmp_path / "t.jsonl", resume=True, retry_errors=True)
    latest = read_run(tmp_path / "t.jsonl").keyed()
    assert count == 2 and [t["status"] for t in latest.values()] == ["success", "success"]


class PairingGate:
    """Wraps the mock's policy (`complete_async`: the server answers on one event loop): counts the most
    requests the endpoint had in flight at once, and until two were, holds each request (at most `wait_s`)
    for another to come."""

    def __init__(self, complete: Callable[..., Any], wait_s: float = 1.0) -> None:
        self.complete, self.wait_s = complete, wait_s
        self.in_flight = self.most = 0
        self.paired: asyncio.Event | None = None  # made on the server's loop

    async def __call__(self, body: Any, headers: Any, **timing: Any) -> Any:
        if self.paired is None:
            self.paired = asyncio.Event()
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.most >= 2:
            self.paired.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.paired.wait(), self.wait_s)
            return await self.complete(body, headers, **timing)
        finally:
            self.in_flight -= 1


def test_the_leaves_of_one_tree_call_the_endpoint_at_once(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tree at a time (--concurrency 1) over HTTP: its two leaves each have a request in flight at once.
    The endpoint's limit of requests in flight counts leaves (--concurrency x --beam), not trees; counting
    trees would step the leaves one after another, the reference's way. MUL0002: the root splits in two at
    step 1 and each leaf makes its three calls (2 goal calls, a reply); the replayed customer calls nothing."""
    cfg = ToolWOZHarvestConfig.model_validate(
        {"task": ["MUL0002"], "concurrency": 1, "beam": 2, "use_n": False, "user": "replay"}
    )
    endpoints = open_endpoints(cfg, toolwoz_env)
    assert endpoints.mock is not None  # a dry run over HTTP
    gate = PairingGate(endpoints.mock.policy.complete_async)
    monkeypatch.setattr(endpoints.mock.policy, "complete_async", gate)
    count, [tree] = run(toolwoz_env, cfg, tmp_path / "trees.jsonl", endpoints)
    assert (count, tree["status"], tree["steps"], len(tree["nodes"])) == (1, "success", 1, 3)
    assert len(tree["model_calls"]) == 6
    assert gate.most == 2


@pytest.mark.parametrize("agent", ["react", "fc"])
def test_a_tree_builds_its_agent_once(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent: str
) -> None:
    """A fork's children get copies of the tree's agent bound to their own chat models: the ReAct system
    prompt (the tool schemas as indented JSON) is rendered once a tree, not once a node (it was most of the
    in-process harvest's time). MUL0001 (no mistakes) grows 5 nodes; each call still goes through its
    branch's model, so the siblings' first calls are one call with n=2 (one per expansion)."""
    build_agent, built = toolwoz_setups.build_agent, []

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(build_agent(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(toolwoz_setups, "build_agent", counting)  # what ToolWOZSetups builds with
    _, [tree] = run(toolwoz_env, config(task=["MUL0001"], agent=agent), tmp_path / "trees.jsonl")
    assert len(tree["nodes"]) == 5 and tree["reward"] == 1.0
    assert len(built) == 1
    assert [c["n"] for c in tree["model_calls"] if c["n"] > 1] == [2, 2]
