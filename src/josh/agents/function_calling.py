"""The paper's function-calling agent: native tool calls with the official schemas, one call per model call."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.agents.base import AgentTurn, ExecutedCall, ToolExecutor
from josh.agents.prompts import FC_SYSTEM_PROMPT, OUT_OF_RETRIES
from josh.llm.base import ChatModel
from josh.types import AssistantMessage, Message, SystemMessage, ToolMessage


def arguments_error(raw: str | None, reason: str | None) -> str:
    """What the agent is told when its tool-call arguments were not a JSON object (the reference crashed)."""
    return (
        f"ERROR: INVALID API CALL! THE ARGUMENTS ARE NOT A VALID JSON OBJECT ({reason}): {(raw or '')[:200]}"
    )


@dataclass
class FunctionCallingAgent:
    """Function calling, matching the reference `FCAgentSimulator`: only a reply's first tool call runs."""

    model: ChatModel
    tools: list[dict[str, Any]]
    temperature: float = 0.0
    max_tokens: int | None = 256
    seed: int | None = 42
    max_model_calls: int = 3
    name: str = "fc"

    async def step(
        self, internal: Sequence[Message], execute: ToolExecutor, *, metadata: Mapping[str, str] | None = None
    ) -> AgentTurn:
        turn = AgentTurn(message=AssistantMessage(content=OUT_OF_RETRIES))
        history = list(internal)
        for _ in range(self.max_model_calls):
            [reply] = await self.model.chat(
                [SystemMessage(content=FC_SYSTEM_PROMPT), *history],
                tools=self.tools,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
                metadata=metadata,
            )
            turn.model_calls += 1
            if reply.usage:
                turn.usage = turn.usage + reply.usage
            if not reply.tool_calls:
                message = AssistantMessage(content=reply.content, usage=turn.usage, model=self.model.name)
                turn.internal.append(AssistantMessage(content=reply.content))
                turn.message = message
                return turn
            call = reply.tool_calls[0]
            if len(reply.tool_calls) > 1:
                turn.notes.append(
                    f"{len(reply.tool_calls) - 1} extra tool calls ignored (the paper runs the first)"
                )
            if call.parse_error is not None:
                result: Any = arguments_error(call.raw_arguments, call.parse_error)
                turn.notes.append(f"malformed tool-call arguments: {call.parse_error}")
            else:
                result = execute(call.name, call.arguments)
                turn.calls.append(ExecutedCall(call=call, result=result))
            new: list[Message] = [
                AssistantMessage(content="", tool_calls=(call,)),
                ToolMessage(tool_call_id=call.id, name=call.name, content=json.dumps(result)),
            ]
            history.extend(new)
            turn.internal.extend(new)
        turn.notes.append("ran out of model calls without a reply")
        turn.internal.append(AssistantMessage(content=OUT_OF_RETRIES))
        turn.message = AssistantMessage(content=OUT_OF_RETRIES, usage=turn.usage, model=self.model.name)
        return turn
