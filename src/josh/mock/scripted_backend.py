"""The `scripted` backend: the mock endpoint's policies called in-process, without HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from josh.llm.openai_compat.wire import metadata_headers, parse_tool_call, to_wire
from josh.mock.policies import MockConfig, MockScript, ScriptedToolWOZ, toolwoz_script
from josh.types import AssistantMessage, Message, Usage


def _message(choice: dict[str, Any]) -> AssistantMessage:
    raw_calls = choice.get("tool_calls")
    calls = tuple(parse_tool_call(raw) for raw in raw_calls or [])
    empty = isinstance(raw_calls, list) and not raw_calls  # `tool_calls: []`, as the HTTP client reads it
    return AssistantMessage(content=choice.get("content") or "", tool_calls=calls, empty_tool_calls=empty)


class ScriptedToolWOZModel:
    """A chat model that plays the mock's scripted agent or customer, in-process and deterministic.

    It sends the policy what the HTTP client would (messages, tools, `n`, seed, metadata headers) and reads
    the response as the HTTP client does: a request's usage is put on its first choice, as
    `OpenAIChatModel` does, so sums over replies are exact. `calls` counts `chat()` calls.
    """

    def __init__(self, policy: ScriptedToolWOZ, name: str = "scripted") -> None:
        self.policy = policy
        self.name = name
        self.calls = 0

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[AssistantMessage]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.calls += 1
        body: dict[str, Any] = {"model": self.name, "messages": [to_wire(m) for m in messages], "n": n}
        if tools:
            body["tools"] = list(tools)
        if seed is not None:
            body["seed"] = seed
        response = self.policy.complete(body, metadata_headers(metadata))
        usage = response["usage"]
        total = Usage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"])
        return [
            _message(choice["message"]).model_copy(
                update={"usage": total if i == 0 else Usage(), "model": self.name, "latency_s": 0.0}
            )
            for i, choice in enumerate(response["choices"])
        ]

    async def check(self) -> None:
        """Nothing to reach: always ready."""
        return None

    async def aclose(self) -> None:
        return None


def scripted_model(
    env: Any,
    config: MockConfig | None = None,
    name: str = "scripted",
    *,
    script: Callable[[Any], MockScript] = toolwoz_script,
) -> ScriptedToolWOZModel:
    """The mock's scripted agent and customer as an in-process chat model, on `env`'s tasks (`script` makes
    what it plays on each: see `ScriptedToolWOZ`).

    Transport faults (HTTP 500s, hangs, latency) need HTTP and are left out; mistakes, malformed tool calls
    and empty replies are kept.
    """
    config = dataclasses.replace(config or MockConfig(), error_rate=0.0, hang_rate=0.0, latency_s=0.0)
    return ScriptedToolWOZModel(ScriptedToolWOZ(env, config, script=script), name)
