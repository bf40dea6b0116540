"""The paper's ReAct agent: PLAN / APICALL {json} / SPEAK in plain text, up to 3 model calls per turn."""

from __future__ import annotations

import functools
import json
import re
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
from josh.agents.prompts import (
    BAD_APICALL,
    COMMAND_END,
    NO_COMMAND,
    OUT_OF_RETRIES,
    REACT_PROMPT,
    TOOLS_PLACEHOLDER,
)
from josh.types import (
    AssistantMessage,
    Message,
    ToolCall,
    UserMessage,
    json_type_name,
    system_message,
)

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
    if strict and isinstance(name, list | dict):  # the reference's `name not in <dict>` raises TypeError
        raise AgentProtocolError(f"APICALL name is {json_type_name(name)}, not a string")
    if not isinstance(name, str) or name not in TOOL_NAMES:
        return None
    return name, parameters


@functools.lru_cache(maxsize=32)
def _with_tools(prompt: str, placeholder: str, tools_json: str) -> str:
    """`prompt` with `placeholder` replaced by the tools (`tools_json`) as `json.dumps(tools, indent=2)`
    writes them: made once a process for each prompt and tools, not once an agent (a harvest builds one a
    tree, an eval one a conversation; the pure-Python indenting encoder takes ~1 ms on ToolWOZ's tools)."""
    return prompt.replace(placeholder, json.dumps(json.loads(tools_json), indent=2))


@dataclass
class ReactAgent(ModelAgent):
    """ReAct over plain text, matching the reference `ReACTAgentSimulator` turn for turn.

    `prompt` is the system prompt; `tools_placeholder` in it is replaced with `json.dumps(tools, indent=2)`,
    as the reference does (the paper's text: `josh.benchmarks.toolwoz.prompts.toolwoz_prompts("paper")`).
    """

    name: str = "react"
    prompt: str = REACT_PROMPT
    tools_placeholder: str = TOOLS_PLACEHOLDER

    def __post_init__(self) -> None:
        if self.tools_placeholder in self.prompt:  # the compact text keys the cache: C-quick, unlike indent=2
            self.system_prompt = _with_tools(self.prompt, self.tools_placeholder, json.dumps(self.tools))
        else:
            self.system_prompt = self.prompt

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
                [system_message(self.system_prompt), *history], turn, metadata=metadata
            )
            commands = parse_commands(reply.content)
            if not commands:
                self._add(turn, history, AssistantMessage(content=NO_COMMAND))
                turn.notes.append("no command in the model output")
            thought = ""
            for kind, text in commands:
                if kind == "PLAN":
                    thought = f"PLAN {text} {COMMAND_END} "
                elif kind == "SPEAK":
                    self._add(turn, history, AssistantMessage(content=f"{thought}SPEAK {text} {COMMAND_END}"))
                    return self._finish(turn, text)
                else:  # APICALL
                    command = text.replace("\n", "")
                    said = AssistantMessage(content=f"{thought}APICALL {command} {COMMAND_END}")
                    result = self._call(command, execute, turn, said)
                    self._add(turn, history, said, UserMessage(content="APIRETURN " + result_text(result)))
        turn.notes.append("ran out of model calls without SPEAK")
        return self._finish(turn, OUT_OF_RETRIES)

    @staticmethod
    def _add(turn: AgentTurn, history: list[Message], *messages: Message) -> None:
        history.extend(messages)
        turn.internal.extend(messages)

    def _call(self, command: str, execute: ToolExecutor, turn: AgentTurn, said: AssistantMessage) -> Any:
        """Run one APICALL; the reference's crashes raise `AgentProtocolError` with `strict_errors`."""
        try:
            parsed = parse_apicall(command, strict=self.strict_errors)
        except AgentProtocolError:
            turn.internal.append(said)  # the record shows what ended the conversation
            raise
        if parsed is None:
            turn.notes.append(f"malformed APICALL: {command[:200]}")
            return BAD_APICALL
        name, parameters = parsed
        if not isinstance(parameters, dict):
            problem = f"APICALL parameters is {json_type_name(parameters)}, not an object"
            if self.strict_errors:
                turn.internal.append(said)
                raise AgentProtocolError(problem)
            turn.notes.append(f"{problem} (the reference crashes here)")
        result = execute(name, parameters)
        arguments = parameters if isinstance(parameters, dict) else {}
        error = None if isinstance(parameters, dict) else "parameters is not a JSON object"
        call = ToolCall(id=f"call_{len(turn.calls)}", name=name, arguments=arguments, parse_error=error)
        turn.calls.append(ExecutedCall(call=call, result=result))
        return result
