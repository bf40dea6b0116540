"""The paper's prompts, read from the verified josh-train wheel at run time, and josh's own wording.

The expected texts are read from the wheel here, in the test, independently of `reference_text` (YAML for
`prompts/prompts.yaml`; the source lines of the two string constants for the others).
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from josh.agents import FunctionCallingAgent, ReactAgent
from josh.agents import prompts as agent_prompts
from josh.benchmarks.toolwoz.prompts import ToolWOZPrompts, toolwoz_prompts
from josh.envs.toolwoz import ToolWOZEnvironment, paths
from josh.envs.toolwoz.reference_text import read_reference_prompts, reference_prompts
from josh.errors import DataError
from josh.llm import OpenAIChatModel
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.mock import MockServer, ScriptedToolWOZ
from josh.mock.policies import toolwoz_script
from josh.mock.scripted_backend import scripted_model
from josh.rollout import run_conversation
from josh.types import AssistantMessage, UserMessage
from josh.users import GoalUserSimulator, GuideUserSimulator
from josh.users import prompts as user_prompts

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def wheel(toolwoz_env: ToolWOZEnvironment) -> zipfile.ZipFile:
    with zipfile.ZipFile(paths.wheel_path()) as zf:
        yield zf


@pytest.fixture(scope="module")
def wheel_yaml(wheel: zipfile.ZipFile) -> dict[str, str]:
    return yaml.safe_load(wheel.read("prompts/prompts.yaml"))


def wheel_source(wheel: zipfile.ZipFile, member: str) -> str:
    return wheel.read(member).decode()


def test_the_paper_texts_are_the_wheels(wheel: zipfile.ZipFile, wheel_yaml: dict[str, str]) -> None:
    paper = reference_prompts()
    assert paper.react == wheel_yaml["react_prompt"] and "{example_filled}" in paper.react
    assert paper.user_opening == wheel_yaml["user_simulator_opening_message_prompt"]
    assert paper.user_system == wheel_yaml["user_simulator_system_prompt"]
    assert paper.user_turn == wheel_yaml["user_simulator_prompt"]
    fc_source = wheel_source(wheel, "josh_train/agents/fc_agent.py")
    assert f'self.MONO_PROMPT = "{paper.fc_system}"\n' in fc_source and len(paper.fc_system) > 100
    guide_source = wheel_source(wheel, "josh_train/users/guide_user_simulator.py")
    assert f'guide_prompt = """{paper.guide}"""\n' in guide_source and len(paper.guide) > 1000
    assert reference_prompts() is paper  # read once a process


def test_the_react_placeholder_is_filled_with_our_tool_schemas(
    wheel: zipfile.ZipFile, toolwoz_env: ToolWOZEnvironment
) -> None:
    """The reference fills `{example_filled}` with json.dumps(data/tools.json, indent=2): our schemas."""
    assert json.loads(wheel.read("data/tools.json")) == toolwoz_env.tool_schemas


def test_josh_prompts_are_not_the_papers() -> None:
    paper, ours = toolwoz_prompts("paper"), toolwoz_prompts("josh")
    assert (paper.name, ours.name) == ("paper", "josh")
    for field in ("react", "fc_system", "user_opening", "user_system", "user_turn", "guide"):
        assert getattr(paper, field) != getattr(ours, field), field
    assert ours.react == agent_prompts.REACT_PROMPT and ours.react_tools_placeholder == "{tools}"
    assert ours.guide == user_prompts.GUIDE_PROMPT and ours.user_turn == user_prompts.TURN_PROMPT
    with pytest.raises(ValueError):
        toolwoz_prompts("other")  # type: ignore[arg-type]


def replies(*outputs: Any) -> tuple[ScriptedChatModel, list[ChatRequest]]:
    seen: list[ChatRequest] = []
    queue = list(outputs)

    def policy(request: ChatRequest) -> Any:
        seen.append(request)
        return queue.pop(0)

    return ScriptedChatModel(policy), seen


def test_agents_and_users_built_with_the_paper_set_send_the_wheels_text(
    wheel: zipfile.ZipFile, wheel_yaml: dict[str, str], toolwoz_env: ToolWOZEnvironment
) -> None:
    paper = toolwoz_prompts("paper")
    tools = json.loads(wheel.read("data/tools.json"))
    hi = [UserMessage(content="hi")]

    model, seen = replies("PLAN x <COMMAND_END> SPEAK hello <COMMAND_END>")
    asyncio.run(ReactAgent(model, toolwoz_env.tool_schemas, **paper.agent_options("react")).step(hi, print))
    react_text = wheel_yaml["react_prompt"].replace("{example_filled}", json.dumps(tools, indent=2))
    assert seen[0].messages[0].content == react_text

    model, seen = replies("hello")
    asyncio.run(
        FunctionCallingAgent(model, toolwoz_env.tool_schemas, **paper.agent_options("fc")).step(hi, print)
    )
    fc_source = wheel_source(wheel, "josh_train/agents/fc_agent.py")
    assert f'self.MONO_PROMPT = "{seen[0].messages[0].content}"\n' in fc_source

    goals = ["You want a <span class='emphasis'>hotel</span>", "in the north"]
    model, seen = replies("Hi.", "Bye. END_CONVERSATION")
    user = GoalUserSimulator(model, goals, **paper.user_options("goal"))
    first = asyncio.run(user.step([]))
    asyncio.run(user.step([first.message, AssistantMessage(content="Booked.")]))
    filled = "\n".join(goals)
    assert [m.content for m in seen[0].messages] == [
        wheel_yaml["user_simulator_opening_message_prompt"].replace("{goals}", filled)
    ]
    assert [m.content for m in seen[1].messages] == [
        wheel_yaml["user_simulator_system_prompt"].replace("{goals}", filled),
        "Hi.",
        "Booked.",
        wheel_yaml["user_simulator_prompt"],
    ]

    model, seen = replies('Advice:\nGo.\nSuggested quote:\n"Hello."')
    turns = [("user", " I need a hotel "), ("assistant", "Which area?")]
    asyncio.run(GuideUserSimulator(model, goals, turns, **paper.user_options("guide")).step([]))
    guide_source = wheel_source(wheel, "josh_train/users/guide_user_simulator.py")
    template = guide_source.split('guide_prompt = """', 1)[1].split('"""', 1)[0]
    expected = (
        template.replace("{goals}", filled)
        .replace("{goal_convo}", "customer: I need a hotel\nagent: Which area?")
        .replace("{current_convo}", "NOT YET STARTED")
    )
    assert [m.content for m in seen[0].messages] == [expected]


def _wheel_with(tmp_path: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of the prompt members of the real wheel, some replaced (None: left out)."""
    out = tmp_path / "josh_train-0.1.4-py3-none-any.whl"
    members = (
        "prompts/prompts.yaml",
        "josh_train/agents/fc_agent.py",
        "josh_train/users/guide_user_simulator.py",
    )
    with zipfile.ZipFile(paths.wheel_path()) as src, zipfile.ZipFile(out, "w") as dst:
        for member in members:
            data = replace.get(member, src.read(member))
            if data is not None:
                dst.writestr(member, data)
    return out


@pytest.mark.parametrize(
    ("replace", "why"),
    [
        ({}, None),
        ({"prompts/prompts.yaml": None}, "cannot read it"),
        ({"prompts/prompts.yaml": b"react_prompt: [unclosed"}, "is not YAML"),
        ({"prompts/prompts.yaml": b"- a list\n"}, "not a mapping"),
        ({"prompts/prompts.yaml": b"react_prompt: only this {example_filled}\n"}, "no text"),
        ({"josh_train/agents/fc_agent.py": b"class FCAgentSimulator:\n    pass\n"}, "MONO_PROMPT"),
        ({"josh_train/agents/fc_agent.py": b"def broken(:\n"}, "MONO_PROMPT"),
        ({"josh_train/users/guide_user_simulator.py": b"guide_prompt = 3\n"}, "guide_prompt"),
        ({"josh_train/users/guide_user_simulator.py": b'guide_prompt = "no placeholders"\n'}, "placeholder"),
    ],
)
def test_a_wheel_without_the_prompts_is_a_clear_data_error(
    tmp_path: Path, toolwoz_env: ToolWOZEnvironment, replace: dict[str, bytes | None], why: str | None
) -> None:
    wheel = _wheel_with(tmp_path, replace)
    if why is None:
        assert read_reference_prompts(wheel) == reference_prompts()
        return
    with pytest.raises(DataError) as info:
        read_reference_prompts(wheel)
    message = str(info.value)
    assert why in message and "josh data fetch --force" in message and "--prompts josh" in message


def test_not_a_zip_is_a_clear_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read it"):
        read_reference_prompts(bad)


# ------------------------------------------------------------------------------------------ the mock endpoint


def _first_messages(prompts: ToolWOZPrompts) -> dict[str, list[str]]:
    """The first message each part sends, per (role, kind)."""
    return {
        "react": [prompts.react],
        "goal": [prompts.user_opening, prompts.user_system],
        "guide": [prompts.guide],
        "fc": [prompts.fc_system],
    }


def test_the_mock_recognises_each_part_of_both_prompt_sets_without_headers(toolwoz_env) -> None:
    policy = ScriptedToolWOZ(toolwoz_env)
    task = toolwoz_env.task(toolwoz_env.task_ids("test")[0])
    goals = "\n".join(task.goal_messages)
    for kind in ("paper", "josh"):
        prompts = toolwoz_prompts(kind)
        for part, expected in (
            ("react", ("agent", "react")),
            ("goal", ("user", "goal")),
            ("guide", ("user", "guide")),
        ):
            for text in _first_messages(prompts)[part]:
                filled = text.replace("{goals}", goals).replace(prompts.react_tools_placeholder, "[]")
                body = {"messages": [{"role": "system", "content": filled}]}
                assert policy._role(body["messages"], body, {}) == expected, (kind, part)


@pytest.mark.parametrize("kind", ["paper", "josh"])
def test_the_mock_reads_the_current_conversation_of_both_guide_wordings(toolwoz_env, kind: str) -> None:
    """The source conversation (before it) must not count: only the customer's lines of the current one do."""
    prompts = toolwoz_prompts(kind)
    policy = ScriptedToolWOZ(toolwoz_env)
    scripts = map(toolwoz_script, map(toolwoz_env.task, toolwoz_env.task_ids("test")))
    script = next(s for s in scripts if len(s.customer_lines) >= 3)
    task = toolwoz_env.task(script.task_id)
    source = "\n".join(["customer: one", "agent: two"] * 5)
    current = "agent: Hi! first\nuser: ok\nagent: second\nuser: ok\n"  # the customer has said 2 lines
    prompt = (
        prompts.guide.replace("{goals}", "\n".join(task.goal_messages))
        .replace("{goal_convo}", source)
        .replace("{current_convo}", current)
    )
    reply = policy._user(script, "guide", [{"role": "user", "content": prompt}], {})
    assert reply["content"].endswith(f'"{script.customer_lines[2]}"')  # the third piece of the goal comes next


async def _dry_run(
    env: ToolWOZEnvironment,
    agent_model: Any,
    user_model: Any,
    prompts: ToolWOZPrompts,
    strategy: str,
    mode: str,
    task_ids: list[str],
) -> dict[str, Any]:
    async def one(task_id: str) -> Any:
        task = env.task(task_id)
        agent_cls: Any = ReactAgent if strategy == "react" else FunctionCallingAgent
        agent = agent_cls(agent_model, env.tool_schemas, **prompts.agent_options(strategy))  # type: ignore[arg-type]
        if mode == "goal":
            user: Any = GoalUserSimulator(user_model, task.goal_messages, **prompts.user_options("goal"))
        else:
            turns = [(t.role, t.text) for t in task.turns]
            user = GuideUserSimulator(user_model, task.goal_messages, turns, **prompts.user_options("guide"))
        return await run_conversation(
            task_id, [g.name for g in task.goal_calls], env.session(task_id), agent, user
        )

    records = await asyncio.gather(*(one(t) for t in task_ids))
    return {r.task_id: r for r in records}


@pytest.mark.parametrize(("strategy", "mode"), [("react", "goal"), ("fc", "guide")])
@pytest.mark.parametrize("transport", ["http", "in-process"])
def test_dry_runs_with_the_paper_prompts_reach_the_same_ceiling(
    toolwoz_env: ToolWOZEnvironment, strategy: str, mode: str, transport: str
) -> None:
    task_ids = toolwoz_env.task_ids("test")[:20]

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        if transport == "in-process":
            model = scripted_model(toolwoz_env)
            runs = [
                await _dry_run(toolwoz_env, model, model, toolwoz_prompts(k), strategy, mode, task_ids)
                for k in ("paper", "josh")
            ]
            return runs[0], runs[1]
        with MockServer(toolwoz_env) as server:
            agent = OpenAIChatModel("josh-mock-agent", base_url=server.base_url, api_key=None, timeout=30)
            user = OpenAIChatModel("josh-mock-user", base_url=server.base_url, api_key=None, timeout=30)
            try:
                runs = [
                    await _dry_run(toolwoz_env, agent, user, toolwoz_prompts(k), strategy, mode, task_ids)
                    for k in ("paper", "josh")
                ]
            finally:
                await agent.aclose()
                await user.aclose()
            return runs[0], runs[1]

    paper, josh = asyncio.run(both())
    assert all(r.status == "success" and r.termination == "user_ended" for r in paper.values()), [
        (r.task_id, r.error) for r in paper.values() if r.status != "success"
    ]
    assert {t: r.reward for t, r in paper.items()} == {t: r.reward for t, r in josh.items()}
    assert {t: len(r.messages) for t, r in paper.items()} == {t: len(r.messages) for t, r in josh.items()}
    # the oracle's ceiling: 17 of the first 20 test tasks at 1.0 (422 of the whole split's 450); the data's warts
    # cap the other three
    assert sum(r.reward == 1.0 for r in josh.values()) == 17
