"""`make` and `make_async`: a task of ToolWOZ or tau2 as a gym env, with its customer."""

from __future__ import annotations

import os
from typing import Any, Literal

from josh.errors import JoshError
from josh.gym.env import AsyncChatEnv, ChatEnv
from josh.gym.tasks import USER_KINDS, GymTasks, Tau2Tasks, ToolWOZTasks
from josh.llm.base import ChatModel

BENCHMARKS = ("toolwoz", "tau2")


def customer_model(user_model: ChatModel | str | None, *, base_url: str | None = None,
                   api_key: str | None = None) -> ChatModel | None:  # fmt: skip
    """The customer's chat model: a `ChatModel` as it is; `hf:PATH` a local Hugging Face model; another
    name a model on the OpenAI-compatible server at `base_url` (None: OpenAI's), `api_key` its key (None:
    `OPENAI_API_KEY` for OpenAI's)."""
    if user_model is None or not isinstance(user_model, str):
        return user_model
    if user_model.startswith("hf:"):
        from josh.llm.hf import HFChatModel

        return HFChatModel(user_model)
    from josh.llm.openai_compat import OpenAIChatModel

    if api_key is None and base_url is None:
        api_key = os.environ.get("OPENAI_API_KEY")
    return OpenAIChatModel(user_model, base_url=base_url, api_key=api_key)


def gym_tasks(
    benchmark: str,
    *,
    domain: str | None = None,
    user: str = "goal",
    user_model: ChatModel | str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    prompts: Literal["josh", "paper"] = "josh",
    environment: Any = None,
) -> GymTasks:
    """A benchmark's tasks with their customer, for gym envs (`environment`: an already loaded one)."""
    if benchmark not in BENCHMARKS:
        raise JoshError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if user not in USER_KINDS:
        raise JoshError(f"unknown user {user!r}; choose one of {', '.join(USER_KINDS)}")
    model = customer_model(user_model, base_url=base_url, api_key=api_key)
    if benchmark == "toolwoz":
        if domain is not None:
            raise JoshError("ToolWOZ has no domain to choose: its tasks span several; leave domain out")
        if prompts not in ("josh", "paper"):
            raise JoshError(f"unknown prompts {prompts!r}; choose josh or paper")
        if environment is None:
            from josh.envs.toolwoz import ToolWOZEnvironment

            environment = ToolWOZEnvironment.load()
        return ToolWOZTasks(environment, user, model, prompts)  # type: ignore[arg-type]
    if environment is None:
        from josh.envs.tau2 import Tau2Environment

        environment = Tau2Environment.load(domain or "airline")
    return Tau2Tasks(environment, user, model)  # type: ignore[arg-type]


def make_async(
    benchmark: str,
    *,
    task_id: str | None = None,
    domain: str | None = None,
    user: str = "goal",
    user_model: ChatModel | str | None = None,
    max_turns: int | None = None,
    max_tool_rounds: int | None = 10,
    base_url: str | None = None,
    api_key: str | None = None,
    prompts: Literal["josh", "paper"] = "josh",
    tasks: GymTasks | None = None,
) -> AsyncChatEnv:
    """One task as an async gym env (`await env.reset()`, `await env.step(message)`, `env.fork()`).

    `benchmark`: "toolwoz" or "tau2" (`domain`: airline, the default, retail or telecom). `task_id`: None is
    the first test task (another comes with `reset(options={"task_id": ...})`). `user`: the customer,
    "goal" (told the goals; tau2's own customer on tau2), "guide" (ToolWOZ: coached from the original
    dialogue), "replay" (ToolWOZ: the original customer's lines, no model) or "scripted" (josh's scripted mock
    customer, no model); `user_model` is the model of goal and guide (a `ChatModel`, `hf:PATH`, or a model
    name on `base_url`). `max_turns`: messages of both sides (None: 15 on ToolWOZ, 40 on tau2);
    `max_tool_rounds`: tool-call messages in a row before the episode is truncated (None: no limit).
    `prompts` (ToolWOZ): the customer's prompts and the suggested system prompt, josh's or the paper's.
    `tasks`: reuse the loaded benchmark of another env (`env.tasks`) instead of loading it again."""
    tasks = tasks or gym_tasks(
        benchmark, domain=domain, user=user, user_model=user_model, base_url=base_url, api_key=api_key,
        prompts=prompts,
    )  # fmt: skip
    if task_id is None:
        ids = tasks.task_ids("test")
        if not ids:
            raise JoshError(f"{benchmark} has no test task: pass task_id=...")
        task_id = ids[0]
    tasks.environment.task(task_id)  # an unknown id fails here, with the list command in its message
    return AsyncChatEnv(tasks, task_id, max_turns=max_turns, max_tool_rounds=max_tool_rounds)


def make(benchmark: str, **options: Any) -> ChatEnv:
    """One task as a sync gym env: `make_async`'s options; `reset`, `step` and `fork` run to completion."""
    return ChatEnv(make_async(benchmark, **options))
