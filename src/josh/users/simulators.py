"""User simulators: `goal` (told the goal), `guide` (coached from the original dialogue), `replay` (no model).

Each is stateless: it reads the visible conversation so far (customer turns are `user`, agent replies
`assistant`) and returns the customer's next message, and whether the customer hung up: whether it said one
of its `stop_tokens` (the environment's: `session.stop_tokens`; ToolWOZ's END_CONVERSATION by default).

Where the environment gives the customer tools of its own (tau2's telecom: the phone), the caller passes a
`UserTools` with the turn: the goal simulator offers the model those tools and runs its calls until it
replies with text (see `GoalUserSimulator.step`). The customer's own tool traffic stays in the history it is
given on later turns (`UserTurn.tool_messages`, in the customer's own orientation: its calls are `assistant`
messages with tool calls, the results `tool` messages); the agent never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from josh.llm.base import ChatModel
from josh.types import (
    AssistantMessage,
    Message,
    ToolMessage,
    Usage,
    UserMessage,
    system_message,
)
from josh.users.prompts import END_CONVERSATION, GUIDE_PROMPT, OPENING_PROMPT, SYSTEM_PROMPT, TURN_PROMPT

# Rounds of tool calls one customer turn may make before it must reply with text (tau2 has no per-turn
# limit, only its 200-step limit on the whole simulation): a customer that keeps calling its tools past this
# ends the conversation as the turn limit does (`UserTurn.truncated`).
USER_TOOL_ROUNDS = 10


@dataclass(frozen=True)
class UserTools:
    """The customer's own tools for one conversation (tau2's telecom: the phone it acts on).

    `schemas` are OpenAI function schemas; `call(name, arguments)` runs one call on the conversation's
    environment session and returns its result; `result_text(result)` is how a result reads to the model."""

    schemas: Sequence[Mapping[str, Any]]
    call: Callable[[str, Any], Any]
    result_text: Callable[[Any], str]


@dataclass
class UserTurn:
    message: UserMessage
    done: bool
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    # The customer's tool traffic this turn, before `message`, as the customer sees it: `assistant` messages
    # with its tool calls, then a `tool` message for each result. Empty without user tools.
    tool_messages: list[Message] = field(default_factory=list)
    # The customer made `max_tool_rounds` rounds of tool calls without replying: `message` is empty and the
    # conversation ends as at the turn limit (tau2 ends such a simulation at its step limit, reward 0).
    truncated: bool = False


class UserSimulator(Protocol):
    name: str

    async def step(
        self,
        visible: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        tools: UserTools | None = None,
    ) -> UserTurn: ...


def _said_stop(text: str, stop_tokens: Sequence[str]) -> bool:
    return any(token in text for token in stop_tokens)


def _flip(visible: Sequence[Message]) -> list[Message]:
    """The conversation from the customer's side: the agent's replies become `user` messages. The customer's
    own tool traffic (assistant messages with tool calls, tool messages) is already its side: kept as it is."""
    out: list[Message] = []
    for message in visible:
        if isinstance(message, ToolMessage) or (isinstance(message, AssistantMessage) and message.tool_calls):
            out.append(message)
        elif message.role == "assistant":
            out.append(UserMessage(content=message.content))
        elif message.role == "user":
            out.append(AssistantMessage(content=message.content))
    return out


@dataclass
class GoalUserSimulator:
    """Told the goal messages; reveals them piecemeal; says END_CONVERSATION to hang up (reference `goal`).

    The same simulator plays tau2's customer from the task's own text: `system_prompt=task.user_system_prompt`
    (its scenario is in it: no `{goals}`), `turn_prompt=None` and `stop_tokens=session.stop_tokens`; the
    agent's greeting (the session's `opening`) is the first line of the conversation, so every request is
    tau2's (system prompt, then the conversation as the customer sees it, greeting first).
    """

    model: ChatModel
    goal_messages: Sequence[str]
    temperature: float = 0.0
    max_tokens: int | None = 256
    seed: int | None = 42
    name: str = "goal"
    # The prompts ({goals} is filled in); the paper's:
    # `josh.benchmarks.toolwoz.prompts.toolwoz_prompts("paper")`.
    opening_prompt: str = OPENING_PROMPT  # the only message of the first request
    system_prompt: str = SYSTEM_PROMPT  # first message of later requests, before the conversation
    turn_prompt: str | None = (
        TURN_PROMPT  # last message of later requests, after the conversation (None: none)
    )
    stop_tokens: Sequence[str] = (END_CONVERSATION,)
    max_tool_rounds: int = USER_TOOL_ROUNDS  # rounds of the customer's own tool calls a turn may make

    async def step(
        self,
        visible: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        tools: UserTools | None = None,
    ) -> UserTurn:
        """The customer's next message. With `tools`, as tau2's user simulator: the model is offered their
        schemas; every tool call of a reply runs (`tools.call`), each result goes back as a tool message
        (`tools.result_text`), and the model is called again, until it replies with text or has made
        `max_tool_rounds` rounds of calls (then the turn is `truncated`). A reply with both text and tool
        calls is a tool round (its text is kept with the calls, not said to the agent)."""
        goals = "\n".join(self.goal_messages)
        if not visible:  # the customer opens: the opening prompt alone
            messages: list[Message] = [system_message(self.opening_prompt.replace("{goals}", goals))]
        else:
            turn = [system_message(self.turn_prompt)] if self.turn_prompt is not None else []
            messages = [
                system_message(self.system_prompt.replace("{goals}", goals)),
                *_flip(visible),
                *turn,
            ]
        if tools is None or not tools.schemas:
            [reply] = await self.model.chat(
                messages,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
                metadata=metadata,
            )
            text = reply.content
            return UserTurn(
                UserMessage(content=text), _said_stop(text, self.stop_tokens), reply.usage or Usage(), 1
            )
        return await self._tool_turn(messages, tools, metadata)

    async def _tool_turn(
        self, messages: list[Message], tools: UserTools, metadata: Mapping[str, str] | None
    ) -> UserTurn:
        usage, calls, traffic = Usage(), 0, []
        for _ in range(self.max_tool_rounds + 1):
            [reply] = await self.model.chat(
                [*messages, *traffic],
                tools=tools.schemas,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
                metadata=metadata,
            )
            usage, calls = usage + (reply.usage or Usage()), calls + 1
            if not reply.tool_calls:
                text = reply.content
                done = _said_stop(text, self.stop_tokens)
                return UserTurn(UserMessage(content=text), done, usage, calls, traffic)
            if calls > self.max_tool_rounds:
                break
            traffic.append(AssistantMessage(content=reply.content, tool_calls=reply.tool_calls))
            for call in reply.tool_calls:
                # Arguments that did not parse run as their raw text: the session answers it in its own
                # words (tau2's error result), as it does for the agent.
                arguments = call.raw_arguments if call.parse_error is not None else call.arguments
                result = tools.call(call.name, arguments)
                traffic.append(
                    ToolMessage(tool_call_id=call.id, name=call.name, content=tools.result_text(result))
                )
        return UserTurn(UserMessage(content=""), False, usage, calls, traffic, truncated=True)


def transcript(visible: Sequence[Message]) -> str:
    """The reference's transcript for the guide, labels included: it maps `assistant` to "user" and `user` to
    "agent", so the customer's lines read "agent:". Kept: the paper's guide numbers were made with it."""
    labels = {"assistant": "user", "user": "agent"}
    return "".join(f"{labels[m.role]}: {m.content}\n" for m in visible if m.role in labels)


@dataclass
class GuideUserSimulator:
    """A coach grounded in the original MultiWOZ dialogue suggests the next line (reference `guide`)."""

    model: ChatModel
    goal_messages: Sequence[str]
    original_turns: Sequence[tuple[str, str]]  # (role, text) with role "user" or "assistant"
    temperature: float = 0.0
    max_tokens: int | None = 256
    seed: int | None = 42
    name: str = "guide"
    # The coach prompt ({goals}, {goal_convo}, {current_convo} are filled in); the paper's:
    # `josh.benchmarks.toolwoz.prompts.toolwoz_prompts("paper")`.
    guide_prompt: str = GUIDE_PROMPT
    stop_tokens: Sequence[str] = (END_CONVERSATION,)

    async def step(
        self,
        visible: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        tools: UserTools | None = None,  # not used: the coach suggests lines, it acts on nothing
    ) -> UserTurn:
        source = "\n".join(
            ("agent: " if role == "assistant" else "customer: ") + text.strip()
            for role, text in self.original_turns
        )
        current = transcript(visible)
        prompt = (
            self.guide_prompt.replace("{goals}", "\n".join(self.goal_messages))
            .replace("{goal_convo}", source)
            .replace("{current_convo}", current if current else "NOT YET STARTED")
        )
        [reply] = await self.model.chat(
            [UserMessage(content=prompt)],
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            metadata=metadata,
        )
        text = reply.content.split("Suggested quote:")[-1].replace("\n", "").replace('"', "")
        return UserTurn(
            UserMessage(content=text), _said_stop(text, self.stop_tokens), reply.usage or Usage(), 1
        )


@dataclass
class ReplayUserSimulator:
    """Replays the original dialogue's customer turns, then hangs up. No model."""

    original_turns: Sequence[tuple[str, str]]
    name: str = "replay"
    stop_tokens: Sequence[str] = (END_CONVERSATION,)  # the first is said after the last line

    async def step(
        self,
        visible: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        tools: UserTools | None = None,  # not used: a replay says its lines, it acts on nothing
    ) -> UserTurn:
        said = sum(1 for m in visible if m.role == "user")
        lines = [text for role, text in self.original_turns if role == "user"]
        text = lines[said] if said < len(lines) else self.stop_tokens[0]
        return UserTurn(UserMessage(content=text), _said_stop(text, self.stop_tokens))
