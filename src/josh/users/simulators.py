"""User simulators: `goal` (told the goal), `guide` (coached from the original dialogue), `replay` (no model).

Each is stateless: it reads the visible conversation so far (customer turns are `user`, agent replies
`assistant`) and returns the customer's next message, and whether the customer hung up: whether it said one
of its `stop_tokens` (the environment's: `session.stop_tokens`; ToolWOZ's END_CONVERSATION by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from josh.llm.base import ChatModel
from josh.types import AssistantMessage, Message, SystemMessage, Usage, UserMessage
from josh.users.prompts import END_CONVERSATION, GUIDE_PROMPT, OPENING_PROMPT, SYSTEM_PROMPT, TURN_PROMPT


@dataclass
class UserTurn:
    message: UserMessage
    done: bool
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0


class UserSimulator(Protocol):
    name: str

    async def step(
        self, visible: Sequence[Message], *, metadata: Mapping[str, str] | None = None
    ) -> UserTurn: ...


def _said_stop(text: str, stop_tokens: Sequence[str]) -> bool:
    return any(token in text for token in stop_tokens)


def _flip(visible: Sequence[Message]) -> list[Message]:
    """The conversation from the customer's side: the agent's replies become `user` messages."""
    out: list[Message] = []
    for message in visible:
        if message.role == "assistant":
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
    # The prompts ({goals} is filled in); the paper's: `josh.benchmarks.toolwoz_prompts.toolwoz_prompts("paper")`.
    opening_prompt: str = OPENING_PROMPT  # the only message of the first request
    system_prompt: str = SYSTEM_PROMPT  # first message of later requests, before the conversation
    turn_prompt: str | None = (
        TURN_PROMPT  # last message of later requests, after the conversation (None: none)
    )
    stop_tokens: Sequence[str] = (END_CONVERSATION,)

    async def step(
        self, visible: Sequence[Message], *, metadata: Mapping[str, str] | None = None
    ) -> UserTurn:
        goals = "\n".join(self.goal_messages)
        if not visible:  # the customer opens: the opening prompt alone
            messages: list[Message] = [SystemMessage(content=self.opening_prompt.replace("{goals}", goals))]
        else:
            turn = [SystemMessage(content=self.turn_prompt)] if self.turn_prompt is not None else []
            messages = [
                SystemMessage(content=self.system_prompt.replace("{goals}", goals)),
                *_flip(visible),
                *turn,
            ]
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
    # `josh.benchmarks.toolwoz_prompts.toolwoz_prompts("paper")`.
    guide_prompt: str = GUIDE_PROMPT
    stop_tokens: Sequence[str] = (END_CONVERSATION,)

    async def step(
        self, visible: Sequence[Message], *, metadata: Mapping[str, str] | None = None
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
        self, visible: Sequence[Message], *, metadata: Mapping[str, str] | None = None
    ) -> UserTurn:
        said = sum(1 for m in visible if m.role == "user")
        lines = [text for role, text in self.original_turns if role == "user"]
        text = lines[said] if said < len(lines) else self.stop_tokens[0]
        return UserTurn(UserMessage(content=text), _said_stop(text, self.stop_tokens))
