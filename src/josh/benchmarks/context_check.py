"""Before any work: do the first prompts fit the context the endpoints serve?

The paper's ReAct prompt alone is about 3,900 tokens and tau2 retail's agent prompt about 4,800: on a server
with a 4,096-token context every conversation fails on its first or second turn. Where the endpoint says its
context (llama.cpp, vLLM, an `hf:` model; see `josh.llm.context`), the run's first request of each side (the
agent's system prompt and tools, the customer's first prompt) is rendered as a run would send it, counted by
the model's own tokenizer where the endpoint has one (else estimated), and compared with it. When that prompt
and one reply (`--max-tokens`) do not fit, the run stops before any work with one line naming both numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.benchmarks.endpoints import Endpoints
from josh.benchmarks.setup import TaskSetups
from josh.errors import JoshError
from josh.llm.base import ChatModel
from josh.llm.context import PromptSize, estimate_prompt_size
from josh.rollout.conversation import customer_tools
from josh.types import AssistantMessage, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirstRequest:
    """The first request one side of a conversation sends its model."""

    role: str  # "agent" or "customer"
    model: ChatModel
    messages: list[Message]
    tools: list[dict[str, Any]] | None
    max_tokens: int | None


class _Captured(Exception):
    def __init__(self, messages: list[Message], tools: list[dict[str, Any]] | None, max_tokens: int | None):
        super().__init__("captured")
        self.request = (messages, tools, max_tokens)


class _Capture:
    """A chat model that stops at its first request and hands it back (as `_Captured`)."""

    def __init__(self, name: str) -> None:
        self.name = name

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
        raise _Captured(list(messages), [dict(tool) for tool in tools] if tools else None, max_tokens)

    async def aclose(self) -> None:
        return None


def _captured(failure: BaseException) -> _Captured | None:
    """The capture inside what a step raised (an agent wraps it in `AgentTurnError`)."""
    while failure is not None and not isinstance(failure, _Captured):
        failure = failure.__cause__  # type: ignore[assignment]
    return failure


async def first_requests(setups: TaskSetups, endpoints: Endpoints, task_id: str) -> list[FirstRequest]:
    """The first request of the agent and of the customer (when it is a model) on `task_id`, trial 0, as the
    run would send them: the agent before it has heard the customer (its system prompt and tools, after the
    greeting where the agent speaks first), the customer before its first line."""
    requests = []
    user_capture = _Capture(endpoints.user.name) if endpoints.user is not None else None
    task = setups.setup(task_id, 0, user_capture)
    opening = getattr(task.session, "opening", None)
    greeting: list[Message] = [AssistantMessage(content=opening)] if opening is not None else []
    if endpoints.user is not None:
        tools = customer_tools(task.session)
        try:
            if tools is None:
                await task.user.step(list(greeting))
            else:
                await task.user.step(list(greeting), tools=tools)
        except Exception as exc:
            if (captured := _captured(exc)) is None:
                raise
            requests.append(FirstRequest("customer", endpoints.user, *captured.request))
    agent = setups.build_agent(_Capture(endpoints.agent.name), 0)
    try:
        await agent.step(list(greeting), lambda name, arguments: None)
    except Exception as exc:
        if (captured := _captured(exc)) is None:
            raise
        requests.append(FirstRequest("agent", endpoints.agent, *captured.request))
    return requests


def _where(model: ChatModel) -> str:
    base_url = getattr(model, "base_url", None)
    return f"{model.name} at {base_url}" if base_url else model.name


async def check_context(setups: TaskSetups, endpoints: Endpoints, task_id: str) -> None:
    """Raise `JoshError` (one line, both numbers and the fix) when a side's first prompt and one reply do not
    fit its model's context: every conversation would fail by its second turn. Endpoints that do not say
    their context (OpenAI, the mock) are not checked."""
    for request in await first_requests(setups, endpoints, task_id):
        window_of = getattr(request.model, "context_window", None)
        window = await window_of() if window_of is not None else None
        if window is None:
            continue
        size_of = getattr(request.model, "prompt_size", None)
        size: PromptSize | None = (
            await size_of(request.messages, request.tools) if size_of is not None else None
        )
        if size is None:
            size = estimate_prompt_size(request.messages, request.tools)
        elif request.tools and size.exact:
            await _warn_if_tools_ignored(request, size)
        reply = request.max_tokens or 0
        log.info(
            "%s's model %s: context %d tokens (%s); first prompt %d tokens (%s), replies up to %d",
            request.role, _where(request.model), window.tokens, window.source, size.tokens, size.counted,
            reply,
        )  # fmt: skip
        if size.tokens + reply <= window.tokens:
            continue
        flag = "--max-tokens" if request.role == "agent" else "--user-max-tokens"
        what = "system prompt and tools" if request.role == "agent" else "its instructions"
        about = "" if size.exact else "about "
        more = f" and a reply may take {reply:,} more ({flag})" if reply else ""
        fails = (
            "every conversation would fail on its first request"
            if size.tokens >= window.tokens
            else "no conversation would get past its first turns"
        )
        raise JoshError(
            f"the {request.role}'s model ({_where(request.model)}) has a {window.tokens:,}-token context "
            f"({window.source}); its first prompt is {about}{size.tokens:,} tokens ({what}, {size.counted})"
            f"{more}, so {fails}: {window.fix}"
        )


async def _warn_if_tools_ignored(request: FirstRequest, size: PromptSize) -> None:
    """A chat template that drops the tool schemas (SmolLM2's does) leaves a function-calling model blind to
    its tools, silently: the run "works" and measures nothing. Rendered with and without them, the prompt is
    the same length: say so."""
    bare = await request.model.prompt_size(request.messages, None)  # type: ignore[attr-defined]
    if bare is not None and bare.exact and bare.tokens == size.tokens:
        side = "agent" if request.role == "agent" else "customer"
        log.warning(
            "the chat template of the %s's model (%s) leaves out the %d tool schemas it is given: the model "
            "will not see its tools (the prompt is %d tokens with them or without); use a model whose template "
            "renders tools%s",
            side, _where(request.model), len(request.tools or []), size.tokens,
            ", or --agent react (its tools are in its prompt's text)" if side == "agent" else "",
        )  # fmt: skip
