"""The paper's function-calling agent: native tool calls with the official schemas, one call per model call."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.agents.base import AgentProtocolError, AgentTurn, ExecutedCall, ModelAgent, ToolExecutor
from josh.agents.prompts import FC_SYSTEM_PROMPT, OUT_OF_RETRIES
from josh.types import AssistantMessage, Message, SystemMessage, ToolMessage


def arguments_error(raw: str | None, reason: str | None) -> str:
    """What the agent is told when its tool-call arguments were not a JSON object (the reference crashed)."""
    return (
        f"ERROR: INVALID API CALL! THE ARGUMENTS ARE NOT A VALID JSON OBJECT ({reason}): {(raw or '')[:200]}"
    )


@dataclass
class FunctionCallingAgent(ModelAgent):
    """Function calling, matching the reference `FCAgentSimulator`: only a reply's first tool call runs."""

    name: str = "fc"

    async def step(
        self, internal: Sequence[Message], execute: ToolExecutor, *, metadata: Mapping[str, str] | None = None
    ) -> AgentTurn:
        turn = AgentTurn(message=AssistantMessage(content=OUT_OF_RETRIES))
        history = list(internal)
        for _ in range(self.max_model_calls):
            reply = await self._complete(
                [SystemMessage(content=FC_SYSTEM_PROMPT), *history], turn, tools=self.tools, metadata=metadata
            )
            if not reply.tool_calls:
                turn.internal.append(AssistantMessage(content=reply.content))
                return self._finish(turn, reply.content)
            call = reply.tool_calls[0]
            if len(reply.tool_calls) > 1:
                turn.notes.append(
                    f"{len(reply.tool_calls) - 1} extra tool calls ignored (the paper runs the first)"
                )
            if call.parse_error is not None and self.strict_errors:
                raise AgentProtocolError(f"tool-call arguments: {call.parse_error}")
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
        return self._finish(turn, OUT_OF_RETRIES)
