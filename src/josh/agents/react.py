"""The paper's ReAct agent: PLAN / APICALL {json} / SPEAK in plain text, up to 3 model calls per turn."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.agents.base import AgentProtocolError, AgentTurn, ExecutedCall, ModelAgent, ToolExecutor
from josh.agents.prompts import BAD_APICALL, COMMAND_END, NO_COMMAND, OUT_OF_RETRIES, REACT_PROMPT
from josh.types import AssistantMessage, Message, SystemMessage, ToolCall, UserMessage

COMMAND_PATTERN = re.compile(r"(PLAN|APICALL|SPEAK)(.*?)(?=PLAN|APICALL|SPEAK|$)", re.DOTALL)
JSON_PATTERN = re.compile(r"\{.*\}")
TOOL_NAMES = (
    "book_restaurant", "search_restaurant", "book_hotel", "search_hotel",
    "book_attraction", "search_attraction", "book_train", "search_train",
)  # fmt: skip


def parse_commands(output: str) -> list[tuple[str, str]]:
    """The commands of one model output, cleaned as the reference does (no newlines, no backslashes)."""
    cleaned = output.replace(COMMAND_END, "").strip().replace("\n", "").replace("\\", "")
    return [(kind.strip(), text.strip()) for kind, text in COMMAND_PATTERN.findall(cleaned)]


def parse_apicall(command: str, *, strict: bool = False) -> tuple[str, Any] | None:
    """`(name, parameters)` of an APICALL, or None when it is not a JSON object with a known name.

    With `strict`, raise where the reference crashes: a name that cannot be looked up (a list or object).
    """
    match = JSON_PATTERN.search(command)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
        name, parameters = data["name"], data["parameters"]
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
        return None
    if strict and isinstance(name, (list, dict)):
        raise AgentProtocolError(f"APICALL name is a {type(name).__name__}")
    if not isinstance(name, str) or name not in TOOL_NAMES:
        return None
    return name, parameters


@dataclass
class ReactAgent(ModelAgent):
    """ReAct over plain text, matching the reference `ReACTAgentSimulator` turn for turn."""

    name: str = "react"

    def __post_init__(self) -> None:
        self.system_prompt = REACT_PROMPT.replace("{tools}", json.dumps(self.tools, indent=2))

    async def step(
        self, internal: Sequence[Message], execute: ToolExecutor, *, metadata: Mapping[str, str] | None = None
    ) -> AgentTurn:
        turn = AgentTurn(message=AssistantMessage(content=OUT_OF_RETRIES))
        history = list(internal)
        for _ in range(self.max_model_calls):
            reply = await self._complete(
                [SystemMessage(content=self.system_prompt), *history], turn, metadata=metadata
            )
            commands = parse_commands(reply.content)
            new: list[Message] = []
            if not commands:
                new.append(AssistantMessage(content=NO_COMMAND))
                turn.notes.append("no command in the model output")
            thought = ""
            spoken = None
            for kind, text in commands:
                if kind == "PLAN":
                    thought = f"PLAN {text} {COMMAND_END} "
                elif kind == "SPEAK":
                    spoken = text
                    new.append(AssistantMessage(content=f"{thought}SPEAK {text} {COMMAND_END}"))
                    break
                else:  # APICALL
                    command = text.replace("\n", "")
                    result = self._call(command, execute, turn, strict=self.strict_errors)
                    new.append(AssistantMessage(content=f"{thought}APICALL {command} {COMMAND_END}"))
                    new.append(UserMessage(content="APIRETURN " + json.dumps(result)))
            history.extend(new)
            turn.internal.extend(new)
            if spoken is not None:
                return self._finish(turn, spoken)
        turn.notes.append("ran out of model calls without SPEAK")
        return self._finish(turn, OUT_OF_RETRIES)

    @staticmethod
    def _call(command: str, execute: ToolExecutor, turn: AgentTurn, *, strict: bool = False) -> Any:
        parsed = parse_apicall(command, strict=strict)
        if parsed is None:
            turn.notes.append(f"malformed APICALL: {command[:200]}")
            return BAD_APICALL
        name, parameters = parsed
        if strict and not isinstance(parameters, dict):
            raise AgentProtocolError(f"APICALL parameters is a {type(parameters).__name__}, not an object")
        result = execute(name, parameters)
        arguments = parameters if isinstance(parameters, dict) else {}
        error = None if isinstance(parameters, dict) else "parameters is not a JSON object"
        call = ToolCall(id=f"call_{len(turn.calls)}", name=name, arguments=arguments, parse_error=error)
        turn.calls.append(ExecutedCall(call=call, result=result))
        return result
