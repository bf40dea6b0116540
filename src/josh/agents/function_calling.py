"""The paper's function-calling agent: native tool calls with the official schemas, one call per model call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from josh.agents.base import (
    AgentProtocolError,
    AgentTurn,
    ExecutedCall,
    ModelAgent,
    ResultText,
    ToolExecutor,
)
from josh.agents.prompts import FC_SYSTEM_PROMPT, OUT_OF_RETRIES
from josh.agents.text_tool_calls import SPOKEN_NOTE_END, TEXT_TOOL_CALL_NOTE, find_text_tool_calls
from josh.types import AssistantMessage, Message, ToolCall, ToolMessage, system_message


def arguments_error(raw: str | None, reason: str | None) -> str:
    """What the agent is told when its tool-call arguments were not a JSON object (the reference crashed)."""
    return (
        f"ERROR: INVALID API CALL! THE ARGUMENTS ARE NOT A VALID JSON OBJECT ({reason}): {(raw or '')[:200]}"
    )


def reference_crash(reply: AssistantMessage) -> str | None:
    """Why the reference's function-calling agent crashes on `reply` (scoring the conversation 0), or None.

    It indexes `tool_calls[0]` whenever `tool_calls` is not None, `json.loads` the arguments, and after
    running the call splits its name into exactly two parts on "_" (`action, domain = name.split("_")`).
    """
    if not reply.tool_calls:
        return "the reply has an empty tool_calls list" if reply.empty_tool_calls else None
    call = reply.tool_calls[0]
    if call.raw_arguments is not None and not call.raw_arguments.strip():
        return "the tool-call arguments are empty (not JSON)"
    if call.parse_error is not None:
        return f"tool-call arguments: {call.parse_error}"
    if len(call.name.split("_")) != 2:
        return f"the tool name {call.name[:100]!r} does not split into two parts on '_'"
    return None


@dataclass
class FunctionCallingAgent(ModelAgent):
    """Function calling, matching the reference `FCAgentSimulator`: only a reply's first tool call runs.

    `parse_text_tool_calls`: run a tool call the model wrote as JSON text as if it were native (the paper
    speaks such text to the customer; either way the turn gets a note starting "tool call written as text").
    `reference_checks`: check each reply for what crashes the paper's agent (ToolWOZ's protocol: a tool name
    that does not split in two on "_", ...): a note, or the end of the conversation under `strict_errors`.
    Off for other benchmarks (tau2's tool names have any number of "_").
    """

    name: str = "fc"
    system_prompt: str = FC_SYSTEM_PROMPT
    parse_text_tool_calls: bool = False
    reference_checks: bool = True

    async def _turn(
        self,
        turn: AgentTurn,
        history: list[Message],
        execute: ToolExecutor,
        metadata: Mapping[str, str] | None,
        result_text: ResultText,
    ) -> AgentTurn:
        for _ in range(self.max_model_calls):
            reply = await self._complete(
                [system_message(self.system_prompt), *history],
                turn,
                tools=self.tools,
                metadata=metadata,
            )
            if not reply.tool_calls:
                reply = self._text_tool_call(reply, turn)
            crash = reference_crash(reply) if self.reference_checks else None
            if crash is not None and self.strict_errors:
                turn.internal.append(  # the record shows what ended the conversation
                    AssistantMessage(content=reply.content, tool_calls=reply.tool_calls[:1])
                )
                raise AgentProtocolError(crash)
            if not reply.tool_calls:
                if crash is not None:
                    turn.notes.append(f"{crash} (the reference crashes here; spoken as text)")
                said = AssistantMessage(content=reply.content)
                history.append(said)
                turn.internal.append(said)
                return self._finish(turn, reply.content)
            call = reply.tool_calls[0]
            if len(reply.tool_calls) > 1:
                turn.notes.append(
                    f"{len(reply.tool_calls) - 1} extra tool calls ignored (the paper runs the first)"
                )
            asked = AssistantMessage(content="", tool_calls=(call,))
            history.append(asked)
            turn.internal.append(asked)
            if call.parse_error is not None:
                result: Any = arguments_error(call.raw_arguments, call.parse_error)
                turn.notes.append(f"malformed tool-call arguments: {call.parse_error}")
            else:
                if crash is not None:
                    turn.notes.append(f"{crash} (the reference crashes here)")
                result = execute(call.name, call.arguments)
                turn.calls.append(ExecutedCall(call=call, result=result))
            answer = ToolMessage(tool_call_id=call.id, name=call.name, content=result_text(result))
            history.append(answer)
            turn.internal.append(answer)
        turn.notes.append("ran out of model calls without a reply")
        turn.internal.append(AssistantMessage(content=OUT_OF_RETRIES))
        return self._finish(turn, OUT_OF_RETRIES)

    def _text_tool_call(self, reply: AssistantMessage, turn: AgentTurn) -> AssistantMessage:
        """`reply`, with the tool call it wrote as text made native when `parse_text_tool_calls` is on."""
        found = find_text_tool_calls(reply.content)
        if not found:
            return reply
        names = ", ".join(c.name[:100] for c in found[:5]) + (", ..." if len(found) > 5 else "")
        if not self.parse_text_tool_calls:
            turn.notes.append(f"{TEXT_TOOL_CALL_NOTE}: {names} {SPOKEN_NOTE_END}")
            return reply
        turn.notes.append(f"{TEXT_TOOL_CALL_NOTE}: {names} (run as a tool call)")
        calls = tuple(
            ToolCall(
                id=f"text_call_{len(turn.calls)}_{i}",
                name=c.name,
                arguments=c.arguments,
                raw_arguments=c.raw_arguments,
            )
            for i, c in enumerate(found)
        )
        return reply.model_copy(update={"content": "", "tool_calls": calls})
