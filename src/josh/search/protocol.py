"""What the JOSH search needs of a conversation: a branch that forks, takes agent turns and customer turns.

Structural protocols only: the search knows no environment, agent or model. `josh.rollout.branch` implements
them over an agent, a user simulator and a forkable environment session; a test implements them on a toy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from josh.types import Message


class AgentOutcome(Protocol):
    """What one agent turn on a branch did."""

    @property
    def messages(self) -> Sequence[Message]:
        """The messages the turn added to the agent's own view (its plans, calls and their results, reply)."""
        ...

    @property
    def reward_events(self) -> Sequence[str]:
        """The goals met by the calls of this turn only (judged against the branch's goals still pending)."""
        ...

    @property
    def over(self) -> bool:
        """The turn failed (a protocol error, a model that failed after its retries): the branch ends here.
        Its calls before the failure still count."""
        ...

    @property
    def notes(self) -> Sequence[str]:
        """Anything worth keeping about the turn (protocol errors the model made, why it failed)."""
        ...


class UserOutcome(Protocol):
    """What one customer turn on a branch did."""

    @property
    def messages(self) -> Sequence[Message]:
        """The customer's message(s), as the agent will see them."""
        ...

    @property
    def done(self) -> bool:
        """The customer hung up (or could not go on): the branch ends here."""
        ...

    @property
    def reward_events(self) -> Sequence[str]:
        """The goals met by the customer's own calls of this turn (a customer with tools of its own, as
        tau2's telecom customer acting on its phone; [] for one that only talks). Credited like an agent
        turn's: the turn belongs to the leaf whose agent turn led to it."""
        ...

    @property
    def tool_messages(self) -> Sequence[Message]:
        """The customer's own tool traffic of this turn (its calls and their results, in its view; never
        shown to the agent): kept with the node for readers, [] when it made no call."""
        ...

    @property
    def notes(self) -> Sequence[str]: ...


class Branch(Protocol):
    """One line of a conversation, with its own environment state."""

    @property
    def preamble(self) -> Sequence[Message]:
        """What the agent's view holds before the customer's opening (tau2's agent greets first; [] when
        the customer opens): the root node's first messages."""
        ...

    def fork(self, count: int) -> Sequence[Branch]:
        """`count` independent branches that continue from this one's state (left to right)."""
        ...

    async def agent_turn(self) -> AgentOutcome: ...

    async def user_turn(self) -> UserOutcome: ...
