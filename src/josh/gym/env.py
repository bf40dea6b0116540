"""One task as a Gymnasium-style environment with the customer inside: `reset`, `step`, `fork`.

The agent is whatever calls `step`: each action is one OpenAI-style assistant message (a dict with `content`
and/or `tool_calls`, a `josh.types.AssistantMessage`, or plain text). A message with tool calls runs every call
on the task's session (arguments that are not a JSON object run as their raw text: the session answers with
its error result) and its results come back as `tool` messages; the customer hears nothing of it. A message
without tool calls is said to the customer, who answers (the customer's reply is the next message of the
observation), unless that message reached `max_turns`.

Observations are the chat so far, as the agent sees it: a list of OpenAI chat message dicts (`user`,
`assistant` with or without `tool_calls`, `tool`), without a system prompt (`info["system_prompt"]` suggests
one). ToolWOZ's customer opens; tau2's agent greets first (its greeting is the observation's first message).

Rewards: a step's reward is how much that step moved the task's progress, the share of its goals met
(ToolWOZ: the score, met goal calls / goal calls, judged as `josh score` judges them; tau2: the share of the
task's goal actions met). A customer's own tool calls (tau2's telecom) count in the step whose reply they
came with. The episode's last step adds the final correction `final - progress`, where `final` is the
session's `final_reward(ended)`: ToolWOZ's is its score (the correction is 0), tau2's is tau2's own
evaluation of the whole conversation (1.0 or 0.0) when the customer ended it and 0.0 otherwise (tau2's
rule for a simulation that hit its limit). So an episode's rewards always sum to its final score; on tau2
the last reward can be negative (goal actions met, tau2's evaluation failed). `info["score"]` is that final
score, `info["reward_info"]` tau2's evaluation (tau2 only).

`terminated`: the customer ended the conversation (said one of the session's stop tokens). `truncated`: the
conversation reached `max_turns` messages (both sides, the greeting included, as `josh eval` counts them),
the agent made `max_tool_rounds` tool-call messages in a row without speaking, or the customer kept calling
its own tools without replying. `fork()` gives an independent copy (its own forked session) that continues
from here: JOSH branching, best-of-N from a prefix.

Not a `gymnasium.Env` subclass: observations and actions are chats, which no `gymnasium.spaces` space
describes (`Text` is a string over a fixed charset), and gymnasium is not a dependency; the signatures are
Gymnasium's, and `josh.gym.check_gym_env` checks what Gymnasium's checker would check of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from josh.errors import JoshError
from josh.gym.tasks import Episode, GymTasks
from josh.llm.openai_compat.wire import parse_tool_call, to_wire
from josh.rollout.conversation import customer_tools, customer_view
from josh.types import AssistantMessage, Message, ToolMessage

T = TypeVar("T")
Action = Mapping[str, Any] | AssistantMessage | str


def assistant_message(action: Action) -> AssistantMessage:
    """An action as an assistant message: an OpenAI-style dict (`content`, `tool_calls` whose `arguments` are
    JSON text or an object), an `AssistantMessage`, or plain text (said to the customer)."""
    if isinstance(action, AssistantMessage):
        return action
    if isinstance(action, str):
        return AssistantMessage(content=action)
    if not isinstance(action, Mapping):
        raise JoshError(
            f"an action is an assistant message (a dict with content and/or tool_calls, or text), "
            f"got {type(action).__name__}"
        )
    content = action.get("content") or ""
    if not isinstance(content, str):
        raise JoshError(f"an action's content must be text, got {type(content).__name__}")
    raw_calls = action.get("tool_calls") or []
    if not isinstance(raw_calls, list | tuple):
        raise JoshError(f"an action's tool_calls must be a list, got {type(raw_calls).__name__}")
    return AssistantMessage(content=content, tool_calls=tuple(parse_tool_call(c) for c in raw_calls))


class AsyncChatEnv:
    """The gym env, async: `await env.reset()`, `await env.step(action)`, `env.fork()` (see the module's
    docstring). Many run concurrently on one event loop (`asyncio.gather` over envs or forks)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (Gymnasium's class attribute)
    render_mode = None

    def __init__(
        self, tasks: GymTasks, task_id: str, *, max_turns: int | None = None, max_tool_rounds: int | None = 10
    ) -> None:
        self.tasks = tasks
        self.task_id = task_id
        self.max_turns = max_turns if max_turns is not None else tasks.max_turns
        if self.max_turns < 1:
            raise JoshError(f"max_turns must be at least 1, got {self.max_turns}")
        if max_tool_rounds is not None and max_tool_rounds < 1:
            raise JoshError(f"max_tool_rounds must be at least 1 (or None: no limit), got {max_tool_rounds}")
        self.max_tool_rounds = max_tool_rounds
        self._episode: Episode | None = None
        self._visible: list[Message] = []  # what the customer and the agent said to each other
        self._heard: list[Message] = []  # the customer's view: `_visible` with its own tool traffic
        self._chat: list[Message] = []  # the agent's view: the observation
        self._credited = 0.0  # progress already paid out as reward
        self._tool_rounds = 0  # tool-call messages since the agent last spoke
        self._over: str | None = None  # how the episode ended (None: it goes on)
        self._rewards: list[float] = []

    # -- Gymnasium's interface ------------------------------------------------------------------------

    async def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Start the task again (`options={"task_id": ...}`: another task): a fresh session, the agent's
        greeting where the benchmark has one, then the customer's opening. `seed` is the customer model's
        seed (None: 42, as `josh eval`'s trial 0). Returns (observation, info): info holds the task id, the
        tools (OpenAI function schemas), the goals, the suggested system prompt and `max_turns`."""
        if options and "task_id" in options:
            self.task_id = str(options["task_id"])
        self._episode = self.tasks.start(self.task_id, seed)
        self._visible, self._heard, self._chat = [], [], []
        self._credited, self._tool_rounds, self._over, self._rewards = 0.0, 0, None, []
        session = self._episode.session
        if session.opening is not None:
            greeting = AssistantMessage(content=session.opening)
            self._visible.append(greeting)
            self._heard.append(greeting)
            self._chat.append(greeting)
            session.say("assistant", greeting.content)
        ended = await self._customer_turn()
        info = {
            "benchmark": self.tasks.name,
            "task_id": self.task_id,
            "tools": session.tools,
            "goals": list(self._episode.goals),
            "system_prompt": self.tasks.system_prompt(),
            "max_turns": self.max_turns,
        }
        if ended is not None:  # the customer hung up at once: the next step ends the episode
            self._over = f"pending:{ended}"
        return self.observation(), info

    async def step(
        self, action: Action
    ) -> tuple[list[dict[str, Any]], float, bool, bool, dict[str, Any]]:
        """Run one assistant message: its tool calls, or what it says and the customer's reply. Returns
        (observation, reward, terminated, truncated, info)."""
        episode = self._require_episode()
        if self._over is not None and not self._over.startswith("pending:"):
            raise JoshError(f"the episode is over ({self._over}): call reset(), or step a fork taken before")
        message = assistant_message(action)
        session = episode.session
        info: dict[str, Any] = {}
        ending: str | None = self._over.removeprefix("pending:") if self._over else None
        if ending is None and message.tool_calls:
            self._chat.append(AssistantMessage(content=message.content, tool_calls=message.tool_calls))
            results = []
            for call in message.tool_calls:
                arguments = call.raw_arguments if call.parse_error is not None else call.arguments
                result = session.call(call.name, arguments)
                results.append(result)
                self._chat.append(
                    ToolMessage(tool_call_id=call.id, name=call.name, content=session.result_text(result))
                )
            info["tool_results"] = results
            self._tool_rounds += 1
            if self.max_tool_rounds is not None and self._tool_rounds >= self.max_tool_rounds:
                ending = "tool_rounds"
        elif ending is None:
            said = AssistantMessage(content=message.content)
            self._visible.append(said)
            self._heard.append(said)
            self._chat.append(said)
            session.say("assistant", said.content)
            self._tool_rounds = 0
            ending = "max_turns" if len(self._visible) >= self.max_turns else await self._customer_turn()
        progress = self.tasks.progress(session)
        reward = progress - self._credited
        self._credited = progress
        info["progress"] = progress
        terminated = ending == "user_ended"
        truncated = ending is not None and not terminated
        if ending is not None:
            final = float(session.final_reward(terminated))
            reward += final - progress
            self._over = ending
            info.update(
                {
                    "score": final,
                    "termination": ending,
                    "failed_goals": [_goal_name(g) for g in session.failed_goals()],
                    **self.tasks.final_info(session),
                }
            )
        self._rewards.append(reward)
        return self.observation(), reward, terminated, truncated, info

    def fork(self) -> AsyncChatEnv:
        """An independent copy that continues from here: its own forked session and message lists; the
        customer (stateless) and its model are shared."""
        episode = self._require_episode()
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._episode = dataclasses.replace(episode, session=episode.session.fork(), goals=list(episode.goals))
        clone._visible, clone._heard, clone._chat = list(self._visible), list(self._heard), list(self._chat)
        clone._rewards = list(self._rewards)
        return clone

    async def close(self) -> None:
        """Nothing to release: the customer's model belongs to the caller."""
        return None

    @property
    def unwrapped(self) -> AsyncChatEnv:
        return self

    # -- what the episode holds -----------------------------------------------------------------------

    def observation(self) -> list[dict[str, Any]]:
        """The chat so far, as the agent sees it (fresh dicts: changing them changes nothing here)."""
        return [to_wire(m) for m in self._chat]

    @property
    def session(self) -> Any:
        """The task's environment session (its calls, reward events, score)."""
        return self._require_episode().session

    @property
    def rewards(self) -> list[float]:
        """The rewards of this episode's steps so far."""
        return list(self._rewards)

    @property
    def done(self) -> bool:
        """Whether the episode ended (a step returned terminated or truncated)."""
        return self._over is not None and not self._over.startswith("pending:")

    def _require_episode(self) -> Episode:
        if self._episode is None:
            raise JoshError("call reset() before step() or fork()")
        return self._episode

    async def _customer_turn(self) -> str | None:
        """The customer's next message; how the episode ends with it ("user_ended", or "customer_tools" when
        it kept calling its own tools without replying), or None."""
        episode = self._require_episode()
        session, user = episode.session, episode.user
        metadata = {"task_id": self.task_id, "role": "user", "turn": str(len(self._visible))}
        tools = customer_tools(session)
        if tools is None:
            said = await user.step(self._heard, metadata=metadata)
        else:
            said = await user.step(self._heard, metadata=metadata, tools=tools)
        self._heard = customer_view(self._heard, said)
        if said.truncated:
            return "customer_tools"
        self._visible.append(said.message)
        self._chat.append(said.message)
        session.say("user", said.message.content)
        return "user_ended" if said.done else None


def _goal_name(goal: Any) -> str:
    return str(getattr(goal, "key", None) or getattr(goal, "name", goal))


class _Loop:
    """The event loop a sync env and its forks run on (one per `make`, so a customer model's connections
    stay on one loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.loop.run_until_complete(coroutine)
        coroutine.close()
        raise JoshError("a sync josh.gym env cannot run inside an event loop: use josh.gym.make_async there")

    def __del__(self) -> None:
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()


class ChatEnv:
    """The gym env, sync (`josh.gym.make`): the same `reset`, `step` and `fork` as `AsyncChatEnv`, each run
    to completion on the env's own event loop."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012
    render_mode = None

    def __init__(self, inner: AsyncChatEnv, loop: _Loop | None = None) -> None:
        self.inner = inner
        self._loop = loop or _Loop()

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """See `AsyncChatEnv.reset`."""
        return self._loop.run(self.inner.reset(seed=seed, options=options))

    def step(self, action: Action) -> tuple[list[dict[str, Any]], float, bool, bool, dict[str, Any]]:
        """See `AsyncChatEnv.step`."""
        return self._loop.run(self.inner.step(action))

    def fork(self) -> ChatEnv:
        """An independent copy that continues from here (see `AsyncChatEnv.fork`)."""
        return ChatEnv(self.inner.fork(), self._loop)

    def close(self) -> None:
        return None

    def observation(self) -> list[dict[str, Any]]:
        return self.inner.observation()

    @property
    def session(self) -> Any:
        return self.inner.session

    @property
    def rewards(self) -> list[float]:
        return self.inner.rewards

    @property
    def done(self) -> bool:
        return self.inner.done

    @property
    def task_id(self) -> str:
        return self.inner.task_id

    @property
    def unwrapped(self) -> ChatEnv:
        return self
