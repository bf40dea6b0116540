"""One branch of a JOSH tree over a conversation: the `josh.search.Branch` protocol for our agents and users.

A branch holds the agent's view and the customer's view of the conversation so far (lists of shared, frozen
messages) and its own environment session; `fork` gives each child a forked session, so a branch's tool calls
and reward events are its own. Sibling branches talk to the agent's model through one `SiblingGroup`, so
their identical first requests are one call with `n` (see `josh.llm.siblings`; without n, each sibling
shifts its seed instead).

Where the session gives the customer tools (tau2's telecom), the one user simulator the branches share is
handed each branch's own runner with every turn (`customer_tools(self.session)`), so a customer's phone
actions land on its own branch's session; its tool traffic stays in that branch's customer view.

What a turn can end in, as in `run_conversation`: a protocol violation (strict errors) or a model that
failed after its retries ends the branch (`over`), keeping what the turn did before it failed; an
`EndpointError` propagates (the whole run stops); anything else is a bug and propagates too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

from josh.agents.base import Agent, AgentTurn, AgentTurnError
from josh.errors import ProtocolViolation
from josh.llm.base import ChatModel, EndpointError, LLMError
from josh.llm.siblings import SiblingGroup, SiblingModel
from josh.rollout.conversation import customer_tools, customer_view
from josh.types import AssistantMessage, Message
from josh.users.simulators import UserSimulator


class ForkableSession(Protocol):
    """What a branch needs of an environment session (`ToolWOZSession` and `Tau2Session` are ones)."""

    def call(self, name: Any, arguments: Any = None) -> Any: ...

    def result_text(self, result: Any) -> str: ...  # a result as the agent sees it

    def say(self, role: str, content: Any) -> None: ...  # "user" or "assistant" said `content`

    @property
    def reward_events(self) -> list[Any]: ...  # goal calls met so far, in order (see `goal_key`)

    def fork(self) -> Any: ...  # an independent session that continues from this one's state

    @property
    def opening(self) -> str | None: ...  # the agent's first line, said before the customer's (None: none)


@dataclass
class BranchAgentTurn:
    """An agent turn on a branch (a `josh.search.AgentOutcome`)."""

    messages: list[Message]
    reward_events: list[str]
    over: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class BranchUserTurn:
    """A customer turn on a branch (a `josh.search.UserOutcome`)."""

    messages: list[Message]
    done: bool
    notes: list[str] = field(default_factory=list)
    reward_events: list[str] = field(default_factory=list)  # goals the customer's own calls met
    tool_messages: list[Message] = field(default_factory=list)  # its tool traffic (in its view)


class ConversationBranch:
    """A conversation that can fork: `agent_turn`, `user_turn`, `fork(count)`.

    `make_agent(model)` builds the agent of a branch around the chat model it must use (each branch gets its
    own, a member of its siblings' group). `metadata` (task id, trial) goes with every model call.
    `goal_key` names a reward event as the search's goals do: its `.name` by default (ToolWOZ's goal calls
    are told apart by their API); a task with several goals of one tool passes a key that tells them apart.
    """

    def __init__(
        self,
        session: ForkableSession,
        model: ChatModel,
        make_agent: Callable[[ChatModel], Agent],
        user: UserSimulator,
        *,
        metadata: Mapping[str, str] | None = None,
        use_n: bool = True,
        goal_key: Callable[[Any], str] = attrgetter("name"),
    ) -> None:
        self.session = session
        self.goal_key = goal_key
        self.base_model = model
        self.make_agent = make_agent
        self.user = user
        self.metadata = dict(metadata or {})
        self.use_n = use_n
        self.model: ChatModel = model
        self.agent = make_agent(model)
        self.seed_shift = 0
        self.internal: list[Message] = []  # the agent's view (without its system prompt)
        self.visible: list[Message] = []  # what the customer and the agent said to each other
        self.heard: list[Message] = []  # the customer's view: `visible` with its own tool traffic
        self.customer_ended = False  # the customer ended the conversation (said a stop token)
        self.preamble: list[Message] = []  # the agent's view before the customer's opening
        if session.opening is not None:  # the agent speaks first (as `run_conversation` does)
            greeting = AssistantMessage(content=session.opening)
            self.preamble.append(greeting)
            self.internal.append(greeting)
            self.visible.append(greeting)
            self.heard.append(greeting)
            session.say("assistant", greeting.content)

    def fork(self, count: int) -> list[ConversationBranch]:
        """`count` children that continue from here, each with a forked session and its sibling model.

        Without n, child k of a branch with seed shift s gets shift s * count + k + 1: unique in the tree."""
        if self.use_n:
            shifts = [self.seed_shift] * count
        else:
            shifts = [self.seed_shift * count + k + 1 for k in range(count)]
        group = SiblingGroup(self.base_model, count, use_n=self.use_n, seed_shifts=shifts)
        children = []
        for member in group.members:
            child = object.__new__(ConversationBranch)
            child.session = self.session.fork()
            child.base_model, child.make_agent, child.user = self.base_model, self.make_agent, self.user
            child.metadata, child.use_n, child.goal_key = self.metadata, self.use_n, self.goal_key
            child.model, child.agent, child.seed_shift = member, self.make_agent(member), member.seed_shift
            child.internal, child.visible = list(self.internal), list(self.visible)
            child.heard, child.customer_ended = list(self.heard), self.customer_ended
            child.preamble = self.preamble
            children.append(child)
        return children

    async def agent_turn(self) -> BranchAgentTurn:
        """One agent turn; its reward events are the goals its own calls met (this branch's session)."""
        before = len(self.session.reward_events)
        turn: AgentTurn | None = None
        failure: BaseException | None = None
        try:
            turn = await self.agent.step(
                self.internal,
                self.session.call,
                metadata={**self.metadata, "role": "agent"},
                result_text=self.session.result_text,
            )
        except AgentTurnError as exc:  # the turn failed after it began: keep what it did
            turn, failure = exc.turn, exc.cause
        except (ProtocolViolation, LLMError) as exc:  # an agent that does not keep its partial turn
            failure = exc
        finally:
            if isinstance(self.model, SiblingModel):
                self.model.release()
        if isinstance(failure, EndpointError) or (
            failure is not None and not isinstance(failure, ProtocolViolation | LLMError)
        ):
            raise failure  # the endpoint is unusable (the run stops), or a bug (this task fails)
        notes = list(turn.notes) if turn is not None else []
        if isinstance(failure, ProtocolViolation):
            notes.append(f"{failure} (strict errors: this branch ends here)")
        elif failure is not None:
            notes.append(f"the agent's turn failed: {type(failure).__name__}: {failure}")
        messages = list(turn.internal) if turn is not None else []
        self.internal.extend(messages)
        if turn is not None and failure is None:
            self.visible.append(turn.message)
            self.heard.append(turn.message)
            self.session.say("assistant", turn.message.content)
        met = [self.goal_key(goal) for goal in self.session.reward_events[before:]]
        return BranchAgentTurn(messages, met, over=failure is not None, notes=notes)

    async def user_turn(self) -> BranchUserTurn:
        """One customer turn; a customer model that failed after its retries ends the branch, and so does a
        customer that kept calling its own tools without replying (`UserTurn.truncated`). The goals its own
        calls met (a customer with tools) are the turn's reward events, a turn that failed included."""
        metadata = {**self.metadata, "role": "user", "turn": str(len(self.visible))}
        tools = customer_tools(self.session)  # this branch's session: its own device
        before = len(self.session.reward_events)

        def outcome(
            messages: list[Message], done: bool, notes: list[str], traffic: list[Message]
        ) -> BranchUserTurn:
            met = [self.goal_key(goal) for goal in self.session.reward_events[before:]]
            return BranchUserTurn(messages, done, notes, met, traffic)

        try:
            if tools is None:
                said = await self.user.step(self.heard, metadata=metadata)
            else:
                said = await self.user.step(self.heard, metadata=metadata, tools=tools)
        except EndpointError:
            raise
        except LLMError as exc:
            return outcome([], True, [f"the customer's turn failed: {type(exc).__name__}: {exc}"], [])
        except ProtocolViolation as exc:  # strict errors: a customer's call the environment refuses
            return outcome([], True, [f"{exc} (strict errors: this branch ends here)"], [])
        self.heard = customer_view(self.heard, said)
        traffic = list(said.tool_messages)
        if said.truncated:
            note = "the customer kept calling its tools without replying: this branch ends here"
            return outcome([], True, [note], traffic)
        self.visible.append(said.message)
        self.internal.append(said.message)
        self.session.say("user", said.message.content)
        self.customer_ended = said.done
        return outcome([said.message], said.done, [], traffic)
