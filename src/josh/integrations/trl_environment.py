"""TRL's `GRPOTrainer(environment_factory=...)` over `josh.gym`: a task with its customer as a TRL environment.

TRL's contract (trl 1.16, `GRPOTrainer`): the factory makes one instance per rollout; `reset(**row)` gets the
dataset row and returns text appended to the prompt's last message; every public method is a tool the model
may call (its schema read from its signature and Google-style docstring); `get_reward()` is read once the
rollout is over. A rollout ends when the model answers without a tool call.

So the customer is a tool: `reply_to_customer(message)` says `message` to the customer and returns the
customer's answer. TRL's loop has no turn for a second party (plain text ends the rollout), and a tool keeps
the whole conversation in one completion: the model's words to the customer are tool arguments, the
customer's words tool results (masked out of the loss, as every tool result is). The benchmark's own tools
(ToolWOZ's 8, a tau2 domain's) are methods of the class, with the benchmark's schemas. The reward is the
conversation's score when it ends (`josh.gym`'s rewards summed: ToolWOZ's met goal calls / goal calls; tau2's
evaluation, 0 unless the customer ended the conversation), read when the rollout stops.

Instances run their customer's model calls on one event loop per factory, from TRL's (synchronous)
tool loop: rollouts talk to their customers one at a time. No vLLM is needed: TRL's environment mode runs
on transformers' generation.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from typing import Any, Literal, Optional

from josh.errors import JoshError
from josh.gym.env import AsyncChatEnv, _Loop
from josh.gym.make import gym_tasks
from josh.gym.tasks import GymTasks
from josh.llm.hf.spec import TRAIN_EXTRA_HINT

TALK_NOTE = (
    "You speak to the customer only through the tool reply_to_customer: call it with what you want to say, "
    "and it returns the customer's answer. Use the other tools to look things up and act. When the customer "
    "says goodbye, the conversation is over: stop."
)
OVER = "ERROR: the conversation is over; the customer has left."
_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                          "object": dict}  # fmt: skip
RESERVED = ("reset", "get_reward", "reply_to_customer")


class JoshTRLEnvironment:
    """One rollout's conversation (see the module's docstring); `trl_environment_factory` makes the
    subclass of a benchmark, with its tools as methods."""

    tasks: GymTasks
    max_turns: int | None = None
    max_tool_rounds: int | None = 10
    _loop: _Loop

    def __init__(self) -> None:
        self._env: AsyncChatEnv | None = None

    def reset(self, **row: Any) -> str:
        """Start the row's task (`task_id`); return the customer's opening line (appended to the prompt)."""
        task_id = row.get("task_id")
        if not isinstance(task_id, str):
            raise JoshError("a row of a josh TRL dataset has a task_id column: make it with trl_dataset()")
        self._env = AsyncChatEnv(
            self.tasks, task_id, max_turns=self.max_turns, max_tool_rounds=self.max_tool_rounds
        )
        observation, _ = self._loop.run(self._env.reset(seed=row.get("seed")))
        return str(observation[-1]["content"])

    def reply_to_customer(self, message: str) -> str:
        """Say something to the customer and hear their answer.

        Args:
            message: What you say to the customer.

        Returns:
            The customer's answer.
        """
        env = self._started()
        if env.done:
            return OVER
        observation, _, terminated, truncated, _ = self._loop.run(env.step(str(message)))
        if terminated:
            return f"{observation[-1]['content']}\n(The customer has ended the conversation.)"
        if truncated:
            return "(The conversation has reached its length limit; it is over.)"
        return str(observation[-1]["content"])

    def get_reward(self) -> float:
        """The conversation's score: the gym rewards' sum when it ended; otherwise what it scores as it
        stands, ended without the customer hanging up (ToolWOZ: its score; tau2: 0)."""
        env = self._env
        if env is None:
            return 0.0
        if env.done:
            return float(sum(env.rewards))
        return float(env.session.final_reward(False))

    def _call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        env = self._started()
        if env.done:
            return OVER
        call = {"id": f"call_{len(env.session.calls)}", "type": "function",
                "function": {"name": name, "arguments": arguments}}  # fmt: skip
        observation, *_ = self._loop.run(env.step({"content": "", "tool_calls": [call]}))
        return str(observation[-1]["content"])

    def _started(self) -> AsyncChatEnv:
        if self._env is None:
            raise JoshError("reset() first: TRL calls it with the dataset row before the rollout")
        return self._env


def _python_type(spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return _TYPES.get(kind, str) if isinstance(kind, str) else str


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def tool_method(schema: dict[str, Any]) -> Callable[..., str]:
    """A method calling the tool of an OpenAI function schema, with a signature and a Google-style docstring
    from which transformers' `get_json_schema` (what TRL reads) gives that schema back."""
    function = schema["function"]
    name = function["name"]
    parameters = function.get("parameters") or {}
    properties: dict[str, Any] = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])

    def method(self: JoshTRLEnvironment, **arguments: Any) -> str:
        return self._call_tool(name, arguments)

    signature = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    lines = [_one_line(function.get("description")) or f"The {name} tool.", "", "Args:"]
    for parameter, spec in properties.items():
        if not parameter.isidentifier() or keyword.iskeyword(parameter):
            continue  # no Python parameter can have this name: left out of the schema the model sees
        kind = _python_type(spec)
        annotation = kind if parameter in required else Optional[kind]  # noqa: UP045 (transformers reads Optional)
        default = inspect.Parameter.empty if parameter in required else None
        signature.append(inspect.Parameter(parameter, inspect.Parameter.KEYWORD_ONLY, default=default,
                                           annotation=annotation))  # fmt: skip
        annotations[parameter] = annotation
        described = _one_line(spec.get("description")) or parameter
        if spec.get("enum"):
            import json

            described += f" (choices: {json.dumps(spec['enum'])})"
        lines.append(f"    {parameter}: {described}")
    if len(lines) == 3:
        lines = lines[:1]
    lines += ["", "Returns:", "    The tool's result."]
    method.__name__ = method.__qualname__ = name
    method.__doc__ = "\n".join(lines)
    method.__signature__ = inspect.Signature(signature, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = {**annotations, "return": str}
    return method


def trl_environment_factory(
    benchmark: Literal["toolwoz", "tau2"] = "toolwoz",
    *,
    domain: str | None = None,
    user: str = "scripted",
    user_model: Any = None,
    base_url: str | None = None,
    api_key: str | None = None,
    max_turns: int | None = None,
    max_tool_rounds: int | None = 10,
    tools: list[str] | None = None,
    tasks: GymTasks | None = None,
) -> type[JoshTRLEnvironment]:
    """The `environment_factory` of `GRPOTrainer` for a benchmark (`josh.gym.make`'s options): a class whose
    instances are one rollout's conversation each, with `reply_to_customer` and the benchmark's tools
    (`tools`: only these, by name; every tool's call still runs on the session if the model names it)."""
    tasks = tasks or gym_tasks(benchmark, domain=domain, user=user, user_model=user_model, base_url=base_url,
                               api_key=api_key)  # fmt: skip
    schemas = tasks.environment.tool_schemas
    if tools is not None:
        known = {s["function"]["name"] for s in schemas}
        unknown = [name for name in tools if name not in known]
        if unknown:
            raise JoshError(f"{tasks.name} has no tool {unknown[0]!r}; its tools: {', '.join(sorted(known))}")
        schemas = [s for s in schemas if s["function"]["name"] in tools]
    clash = [s["function"]["name"] for s in schemas if s["function"]["name"] in RESERVED]
    if clash:
        raise JoshError(f"{tasks.name} has a tool named {clash[0]}, which TRL's environment reserves")
    methods = {s["function"]["name"]: tool_method(s) for s in schemas}
    attributes = {"tasks": tasks, "max_turns": max_turns, "max_tool_rounds": max_tool_rounds, "_loop": _Loop(),
                  **methods}  # fmt: skip
    label = {"toolwoz": "ToolWOZ", "tau2": f"Tau2{str(getattr(tasks.environment, 'domain', '')).title()}"}
    return type(f"Josh{label.get(tasks.name, tasks.name)}Environment", (JoshTRLEnvironment,), attributes)


def trl_dataset(
    benchmark: Literal["toolwoz", "tau2"] = "toolwoz",
    *,
    split: str = "train",
    limit: int | None = None,
    domain: str | None = None,
    tasks: GymTasks | None = None,
    environment_factory: type[JoshTRLEnvironment] | None = None,
) -> Any:
    """The tasks of a split as a `datasets.Dataset` of prompts for `GRPOTrainer`: columns `prompt` (the
    agent's system prompt with how to talk to the customer, tau2's greeting where the agent speaks first,
    and an empty user message that `reset` fills with the customer's opening) and `task_id`."""
    try:
        from datasets import Dataset
    except ImportError:
        raise JoshError(f"trl_dataset needs the datasets package: {TRAIN_EXTRA_HINT}") from None

    if environment_factory is not None:
        tasks = environment_factory.tasks
    tasks = tasks or gym_tasks(benchmark, domain=domain, user="replay" if benchmark == "toolwoz" else "scripted")
    ids = tasks.task_ids(split)[:limit] if limit is not None else tasks.task_ids(split)
    if not ids:
        raise JoshError(f"no {tasks.name} task in split {split!r}")
    system = {"role": "system", "content": f"{tasks.system_prompt()}\n\n{TALK_NOTE}"}
    rows = []
    for task_id in ids:
        opening = tasks.environment.session(task_id).opening
        greeting = [{"role": "assistant", "content": opening}] if opening is not None else []
        rows.append({"prompt": [system, *greeting, {"role": "user", "content": ""}], "task_id": task_id})
    return Dataset.from_list(rows)
