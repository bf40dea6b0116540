"""One conversation: the customer opens, then agent and customer alternate until a hang-up or the turn limit.

Matches the reference's loop: `while len(messages) < max_turns: user step (stop on END_CONVERSATION);
agent step`, where `messages` counts what both sides said (the paper: 15).

The environment's session decides what is environment-specific: how a tool result reads to the agent
(`result_text`), what the conversation's messages mean to its score (`say`), what a conversation that
did not end with the customer's stop scores (`final_reward`), and whether the agent speaks first (`opening`:
tau2's agent greets the customer; ToolWOZ's customer opens). The customer's stop words are the session's
`stop_tokens` (given to the user simulator by whoever builds it).

A session may give the customer tools of its own (`CustomerToolSession`: tau2's telecom, where the customer
acts on its phone): then each customer turn gets them (`customer_tools`), its calls run on the session and
are recorded (`RolloutRecord.user_calls`), and its tool traffic stays in the history the customer is given
later (never in the agent's). A session with no `user_tools` (ToolWOZ's) changes nothing.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any, Protocol

from josh.agents.base import Agent, AgentTurn, AgentTurnError
from josh.errors import ProtocolViolation
from josh.llm.base import EndpointError, LLMError
from josh.llm.ledger import CallLedger
from josh.rollout.record import CallResult, RolloutRecord, Termination
from josh.types import AssistantMessage, Message, Usage
from josh.users.simulators import UserSimulator, UserTools, UserTurn


class ToolSession(Protocol):
    """What a rollout needs of an environment session (`ToolWOZSession` and `Tau2Session` are ones)."""

    def call(self, name: Any, arguments: Any = None) -> Any: ...

    def result_text(self, result: Any) -> str: ...  # a result as the agent sees it

    def say(self, role: str, content: Any) -> None: ...  # "user" or "assistant" said `content`

    def score(self) -> float: ...

    def final_reward(self, ended: bool) -> float: ...  # the reward, given whether the customer ended it

    @property
    def opening(self) -> str | None: ...  # the agent's first line, said before the customer's (None: none)

    @property
    def calls(self) -> list[Any]: ...  # records with `.rewards`

    def failed_goals(self) -> list[Any]: ...  # goal calls with `.name`


class CustomerToolSession(Protocol):
    """What a session whose customer has tools of its own adds (`Tau2Session`; ToolWOZ's has none)."""

    @property
    def user_tools(self) -> list[dict[str, Any]]: ...  # OpenAI function schemas ([]: none)

    def user_call(self, name: Any, arguments: Any = None) -> Any: ...  # runs one of the customer's calls

    @property
    def user_calls(self) -> list[Any]: ...  # the customer's calls so far, records with `.rewards`


def customer_tools(session: Any, call: Any = None) -> UserTools | None:
    """The customer's tools on `session` (None when it offers none: no `user_tools`, or an empty list).

    `call` replaces `session.user_call` as the runner (the rollout wraps it to note each call's turn)."""
    schemas = getattr(session, "user_tools", None)
    if not schemas:
        return None
    return UserTools(schemas=schemas, call=call or session.user_call, result_text=session.result_text)


def customer_view(visible: list[Message], said: UserTurn) -> list[Message]:
    """The customer's history after its turn: its tool traffic, then what it said (when it said something)."""
    spoken = [] if said.truncated else [said.message]
    return [*visible, *said.tool_messages, *spoken]


async def run_conversation(
    task_id: str,
    goal_calls: list[str],
    session: ToolSession,
    agent: Agent,
    user: UserSimulator,
    *,
    max_turns: int = 15,
    trial: int = 0,
    seed: int | None = None,
    metadata: Mapping[str, str] | None = None,
    ledger: CallLedger | None = None,
) -> RolloutRecord:
    """Run one conversation to its end and record everything. Never raises for model or tool errors, except
    `EndpointError` (the endpoint as a whole is down or unusable: the conversation is not recorded).

    With `ledger` (holding the agent's and the user's models, wrapped), the record's usage and model-call
    counts come from it: every call the server finished is counted, even in a turn that failed later.
    """
    started = time.perf_counter()
    visible: list[Message] = []
    heard: list[Message] = []  # the customer's view: `visible` with its own tool traffic
    turn_of_user_call: list[int] = []
    internal: list[Message] = []
    turn_of_call: list[int] = []
    agent_usage = user_usage = Usage()
    agent_calls = user_calls = 0
    notes: list[str] = []
    error: str | None = None
    termination: Termination = "max_turns"
    base = {"task_id": task_id, "trial": str(trial), **(metadata or {})}
    agent_turn = 0

    def execute(name: str, arguments: Any) -> Any:
        turn_of_call.append(agent_turn)
        return session.call(name, arguments)

    def execute_for_user(name: str, arguments: Any) -> Any:
        turn_of_user_call.append(agent_turn)
        return session.user_call(name, arguments)  # type: ignore[attr-defined]

    tools = customer_tools(session, execute_for_user)

    def record_turn(turn: AgentTurn) -> None:
        nonlocal agent_usage, agent_calls
        agent_usage, agent_calls = agent_usage + turn.usage, agent_calls + turn.model_calls
        internal.extend(turn.internal)
        notes.extend(f"turn {agent_turn}: {n}" for n in turn.notes)

    failure: BaseException | None = None
    customer_failure: ProtocolViolation | None = None
    if session.opening is not None:  # the agent speaks first: both sides' histories open with its line
        greeting = AssistantMessage(content=session.opening)
        visible.append(greeting)
        heard.append(greeting)
        internal.append(greeting)
        session.say("assistant", greeting.content)
    try:
        while len(visible) < max_turns:
            metadata = {**base, "role": "user", "turn": str(len(visible))}
            try:
                if tools is None:  # the request as it always was: no tools argument
                    said = await user.step(heard, metadata=metadata)
                else:
                    said = await user.step(heard, metadata=metadata, tools=tools)
            except ProtocolViolation as exc:  # strict errors: a customer's own call the environment refuses
                customer_failure = exc
                break
            user_usage, user_calls = user_usage + said.usage, user_calls + said.model_calls
            heard = customer_view(heard, said)
            if said.truncated:
                notes.append(
                    f"turn {agent_turn}: the customer kept calling its tools without replying: the "
                    "conversation ends as at the turn limit"
                )
                break
            visible.append(said.message)
            internal.append(said.message)
            session.say("user", said.message.content)
            if said.done:
                termination = "user_ended"
                break
            try:
                replied = await agent.step(
                    internal, execute, metadata={**base, "role": "agent"}, result_text=session.result_text
                )
            except AgentTurnError as exc:  # keep what the turn finished before it failed
                record_turn(exc.turn)
                failure = exc.cause
                break
            record_turn(replied)
            visible.append(replied.message)
            heard.append(replied.message)
            session.say("assistant", replied.message.content)
            agent_turn += 1
    except Exception as exc:
        failure = exc
    if isinstance(failure, EndpointError):
        raise failure
    if ledger is not None:
        agent_usage, user_usage = ledger.usage("agent"), ledger.usage("user")
        agent_calls, user_calls = ledger.count("agent", failed=False), ledger.count("user", failed=False)
    if customer_failure is not None:
        termination = "user_error"
        notes.append(
            f"turn {agent_turn}: the customer broke the tool protocol: {customer_failure} (strict errors: the "
            "conversation ends with reward 0)"
        )
    elif isinstance(failure, ProtocolViolation):  # the agent's output, or a call the environment refuses
        termination = "agent_error"
        notes.append(f"turn {agent_turn}: {failure} (strict errors: the conversation ends with reward 0)")
    elif isinstance(failure, LLMError):
        termination, error = "error", f"{type(failure).__name__}: {failure}"
    elif failure is not None:  # a bug: recorded for this task, never the end of the run
        termination = "error"
        trace = "".join(traceback.format_exception(failure, limit=8))
        error = f"{type(failure).__name__}: {failure}\n{trace}"

    score = session.score()
    reward = session.final_reward(termination == "user_ended")
    if termination == "max_turns" and reward != score:
        notes.append(f"the customer did not end the conversation: this environment scores it {reward}")
    calls = [
        CallResult(turn=turn, name=c.name, arguments=c.arguments, result=c.result, rewards=list(c.rewards))
        for turn, c in zip(turn_of_call, session.calls, strict=False)
    ]
    user_call_results = [
        CallResult(turn=turn, name=c.name, arguments=c.arguments, result=c.result, rewards=list(c.rewards))
        for turn, c in zip(turn_of_user_call, getattr(session, "user_calls", []), strict=False)
    ]
    return RolloutRecord(
        task_id=task_id,
        trial=trial,
        seed=seed,
        status="error" if error else "success",
        termination=termination,
        reward=None if error else (0.0 if termination in ("agent_error", "user_error") else reward),
        partial_reward=score,
        goal_calls=goal_calls,
        failed_goals=[g.name for g in session.failed_goals()],
        reward_events=_events_in_order(calls, user_call_results),
        calls=calls,
        messages=visible,
        internal=internal,
        agent_usage=agent_usage,
        user_usage=user_usage,
        agent_model_calls=agent_calls,
        user_model_calls=user_calls,
        latency_s=round(time.perf_counter() - started, 4),
        error=error,
        notes=notes,
        model_calls=list(ledger.calls) if ledger is not None else [],
        user_calls=user_call_results,
    )


def _events_in_order(calls: list[CallResult], user_calls: list[CallResult]) -> list[str]:
    """The goals either side's calls met, in the order they were met: customer turn k (its own calls, where
    it has tools) comes before agent turn k, and each side's calls keep their order (the sort is stable)."""
    ordered = sorted(
        [(c.turn, 0, c) for c in user_calls] + [(c.turn, 1, c) for c in calls], key=lambda t: t[:2]
    )
    return [goal for _, _, call in ordered for goal in call.rewards]
