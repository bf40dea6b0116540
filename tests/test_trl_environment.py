"""The TRL adapter (`josh.integrations`): a task with its customer as `GRPOTrainer(environment_factory=...)`'s
environment, the tasks as a dataset of prompts, and two GRPO steps through it on the tiny model."""

from __future__ import annotations

import inspect
import io
import json
from pathlib import Path
from typing import Any

import pytest

from josh.cli.score_cmd import score_stream
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError
from josh.gym import gym_tasks
from josh.integrations import JoshTRLEnvironment, trl_dataset, trl_environment_factory
from josh.integrations.trl_environment import OVER

pytestmark = pytest.mark.data
transformers = pytest.importorskip("transformers")


def _tools_as_trl_sees_them(instance: JoshTRLEnvironment) -> dict[str, Any]:
    """What TRL 1.16's GRPOTrainer takes as tools: the public methods of the class but reset and get_reward."""
    return {
        name: getattr(instance, name)
        for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    }


@pytest.mark.slow  # imports transformers (5 s)
def test_the_tools_give_back_the_benchmarks_schemas(toolwoz_env: ToolWOZEnvironment) -> None:
    from transformers.utils import get_json_schema

    factory = trl_environment_factory(tasks=gym_tasks("toolwoz", user="replay", environment=toolwoz_env))
    tools = _tools_as_trl_sees_them(factory())
    assert set(tools) == {s["function"]["name"] for s in toolwoz_env.tool_schemas} | {"reply_to_customer"}
    for schema in toolwoz_env.tool_schemas:
        want = schema["function"]
        got = get_json_schema(tools[want["name"]])["function"]
        assert got["description"] == want["description"]
        assert set(got["parameters"]["properties"]) == set(want["parameters"]["properties"])
        for name, spec in want["parameters"]["properties"].items():
            assert got["parameters"]["properties"][name].get("enum") == spec.get("enum"), (want["name"], name)
    talk = get_json_schema(tools["reply_to_customer"])["function"]
    assert talk["parameters"]["required"] == ["message"]


def test_a_rollout_through_the_adapter_earns_what_josh_score_gives(toolwoz_env: ToolWOZEnvironment) -> None:
    """As TRL drives it: reset(**row) gives the customer's opening, tool calls with keyword arguments, the
    customer through reply_to_customer, get_reward at the end; the reward is `josh score`'s."""
    factory = trl_environment_factory(tasks=gym_tasks("toolwoz", user="replay", environment=toolwoz_env))
    dataset = trl_dataset(split="test", limit=3, environment_factory=factory)
    assert dataset.column_names == ["prompt", "task_id"]
    lines, rewards = [], []
    for n, row in enumerate(dataset):
        env = factory()
        opening = env.reset(**row)
        assert opening == toolwoz_env.task(row["task_id"]).turns[0].text
        assert row["prompt"][0]["role"] == "system" and "reply_to_customer" in row["prompt"][0]["content"]
        tools = _tools_as_trl_sees_them(env)
        calls = [(g.name, dict(g.arguments)) for g in toolwoz_env.task(row["task_id"]).goal_calls][: n + 1]
        for name, arguments in calls:
            json.loads(tools[name](**arguments))  # a tool's result is JSON text
        for _ in range(20):
            answer = tools["reply_to_customer"](message="Anything else?")
            if answer == OVER:
                break
        rewards.append(env.get_reward())
        lines.append({"task_id": row["task_id"], "calls": [{"name": c, "arguments": a} for c, a in calls]})
    sink = io.BytesIO()
    score_stream(toolwoz_env, io.BytesIO("".join(json.dumps(x) + "\n" for x in lines).encode()), sink, say=print)
    assert rewards == pytest.approx([json.loads(x)["reward"] for x in sink.getvalue().decode().splitlines()])
    assert sum(rewards) > 0


def test_adapter_errors_are_one_line(toolwoz_env: ToolWOZEnvironment) -> None:
    tasks = gym_tasks("toolwoz", user="replay", environment=toolwoz_env)
    with pytest.raises(JoshError, match="has no tool 'fly'"):
        trl_environment_factory(tasks=tasks, tools=["fly"])
    env = trl_environment_factory(tasks=tasks)()
    with pytest.raises(JoshError, match="reset"):
        env.reply_to_customer(message="hi")
    with pytest.raises(JoshError, match="task_id column"):
        env.reset(prompt=[])
    assert env.get_reward() == 0.0


@pytest.mark.slow
def test_two_grpo_steps_through_the_adapter_on_the_tiny_model(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRL 1.16's environment mode on CPU (no vLLM): two GRPO steps, two generations, short completions.
    The random model writes no tool call, so its first reply of each rollout is read as a call of
    `reply_to_customer` (TRL's own tool loop then runs it on the rollout's env); the environment's reward is
    logged as its own column, and each rollout's env was reset on a dataset task and heard the customer (whose
    answer, longer than the 8-token completions, TRL then leaves out of the completion: its overlong rule)."""
    pytest.importorskip("trl")
    import trl.trainer.grpo_trainer as grpo
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen3_template

    from josh.train.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.response_template = qwen3_template  # the tiny model writes Hermes tool calls, as Qwen does
    parse = grpo.parse_response

    def first_reply_talks(tok: Any, ids: Any, prefix: Any = None, **kwargs: Any) -> dict[str, Any]:
        if prefix is not None and "<tool_response>" not in tok.decode(prefix):
            call = {"name": "reply_to_customer", "arguments": {"message": "Hello, which area?"}}
            return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}
        return parse(tok, ids, prefix=prefix, **kwargs)

    monkeypatch.setattr(grpo, "parse_response", first_reply_talks)
    # one tool besides the customer keeps the prompt short (the tiny model's 512-token vocabulary)
    factory = trl_environment_factory(
        tasks=gym_tasks("toolwoz", user="replay", environment=toolwoz_env), tools=["book_hotel"]
    )
    dataset = trl_dataset(split="test", limit=2, environment_factory=factory)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=8, max_tool_calling_iterations=1, report_to=[], logging_steps=1,
        use_cpu=True, save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=dataset,
        processing_class=tokenizer, environment_factory=factory,
    )  # fmt: skip
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(steps) == 2
    assert all("rewards/JoshToolWOZEnvironment/mean" in entry for entry in steps)
    assert all(entry["tools/call_frequency"] > 0 for entry in steps)
    pool = trainer._environment_pool[None]
    assert pool and all(env._env is not None and env._env.task_id in dataset["task_id"] for env in pool)
    for env in pool:  # the customer heard the agent through the tool, and answered
        said = [m for m in env._env.observation() if m["role"] != "tool"]
        assert [m["role"] for m in said] == ["user", "assistant", "user"]
        assert said[1]["content"] == "Hello, which area?"


def test_without_datasets_the_dataset_says_how_to_install_it(
    toolwoz_env: ToolWOZEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with pytest.raises(JoshError, match=r"josh-toolkit\[train\]"):
        trl_dataset(tasks=gym_tasks("toolwoz", user="replay", environment=toolwoz_env), limit=1)
