"""The paper's ReAct agent: PLAN / APICALL {json} / SPEAK in plain text, up to 3 model calls per turn."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.agents.base import AgentTurn, ExecutedCall, ToolExecutor
from josh.agents.prompts import BAD_APICALL, COMMAND_END, NO_COMMAND, OUT_OF_RETRIES, REACT_PROMPT
from josh.llm.base import ChatModel
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


def parse_apicall(command: str) -> tuple[str, Any] | None:
    """`(name, parameters)` of an APICALL, or None when it is not a JSON object with a known name."""
    match = JSON_PATTERN.search(command)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
        name, parameters = data["name"], data["parameters"]
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(name, str) or name not in TOOL_NAMES:
        return None
    return name, parameters


@dataclass
class ReactAgent:
    """ReAct over plain text, matching the reference `ReACTAgentSimulator` turn for turn."""

    model: ChatModel
    tools: list[dict[str, Any]]
    temperature: float = 0.0
    max_tokens: int | None = 256
    seed: int | None = 42
    max_model_calls: int = 3
    name: str = "react"

    def __post_init__(self) -> None:
        self.system_prompt = REACT_PROMPT.replace("{tools}", json.dumps(self.tools, indent=2))

    async def step(
        self, internal: Sequence[Message], execute: ToolExecutor, *, metadata: Mapping[str, str] | None = None
    ) -> AgentTurn:
        turn = AgentTurn(message=AssistantMessage(content=OUT_OF_RETRIES))
        history = list(internal)
        for _ in range(self.max_model_calls):
            [reply] = await self.model.chat(
                [SystemMessage(content=self.system_prompt), *history],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
                metadata=metadata,
            )
            turn.model_calls += 1
            if reply.usage:
                turn.usage = turn.usage + reply.usage
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
                    result = self._call(command, execute, turn)
                    new.append(AssistantMessage(content=f"{thought}APICALL {command} {COMMAND_END}"))
                    new.append(UserMessage(content="APIRETURN " + json.dumps(result)))
            history.extend(new)
            turn.internal.extend(new)
            if spoken is not None:
                turn.message = AssistantMessage(content=spoken, usage=turn.usage, model=self.model.name)
                return turn
        turn.notes.append("ran out of model calls without SPEAK")
        turn.message = AssistantMessage(content=OUT_OF_RETRIES, usage=turn.usage, model=self.model.name)
        return turn

    @staticmethod
    def _call(command: str, execute: ToolExecutor, turn: AgentTurn) -> Any:
        parsed = parse_apicall(command)
        if parsed is None:
            turn.notes.append(f"malformed APICALL: {command[:200]}")
            return BAD_APICALL
        name, parameters = parsed
        result = execute(name, parameters)
        arguments = parameters if isinstance(parameters, dict) else {}
        error = None if isinstance(parameters, dict) else "parameters is not a JSON object"
        call = ToolCall(id=f"call_{len(turn.calls)}", name=name, arguments=arguments, parse_error=error)
        turn.calls.append(ExecutedCall(call=call, result=result))
        return result
