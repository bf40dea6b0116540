"""The scripted policies behind the mock endpoint, over OpenAI wire-format requests.

Which part a request plays comes from the prompt (tools for function calling; else the first message:
the ReAct system prompt, the customer's or the guide's coach prompt, in josh's wording or the paper's, whose
markers are derived at run time from the text read from the wheel: `josh.mock.markers`), else from the
`X-Josh-Role` header.
Which task it is about comes from `X-Josh-Task-Id`, else from the goal text or the customer's opening line.

What the policies play on a task is its `MockScript`: the oracle agent's calls, the lines the customer
reveals, what the agent must say when done, the customer's own system prompt (where the environment gives
one) and its stop word. `toolwoz_script` makes it from a ToolWOZ task; another benchmark passes its own
`script` function (tau2's: `josh.mock.tau2_script.tau2_script`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josh.agents.prompts import COMMAND_END
from josh.envs.toolwoz import Task
from josh.llm.openai_compat.wire import PROBE_TEXT
from josh.mock.markers import JOSH_MARKERS, PromptMarkers, current_convo, paper_markers, part
from josh.users.prompts import END_CONVERSATION

DONE_PHRASE = "Everything you asked for is taken care of."
HANDOVER_PHRASE = "Please do the next steps on your phone now."  # the oracle's cue to the customer's actions
ACTED_PHRASE = "I did that on my phone."
ASK_PHRASE = "Could you tell me a little more about what you need?"
SPAN = re.compile(r"</?span[^>]*>")
MODEL_NAMES = ("josh-mock-agent", "josh-mock-user")
MAX_N = 128  # choices one request may ask for (OpenAI's own limit)


INJECTED_500 = "injected fault: HTTP 500"


@dataclass(frozen=True)
class MockConfig:
    """Behaviour of the mock endpoint. Rates are per request, in [0, 1]."""

    mistake_rate: float = 0.0  # oracle agent: chance that a goal call carries a wrong argument
    latency_s: float = 0.0  # seconds from a request to its answer (the mock's own work included)
    error_rate: float = 0.0  # HTTP 500
    hang_rate: float = 0.0  # hold the response for `hang_s` (past a client's timeout)
    hang_s: float = 30.0
    malformed_rate: float = 0.0  # agent tool calls whose JSON does not parse
    empty_rate: float = 0.0  # empty replies
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("mistake_rate", "error_rate", "hang_rate", "malformed_rate", "empty_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_s < 0 or self.hang_s < 0:
            raise ValueError("latency and hang durations must be >= 0")


@dataclass(frozen=True)
class Draws:
    """A request's draws of the fault generator: HTTP 500, hang, and (empty, malformed) for each choice."""

    error: bool
    hang: bool
    per_choice: tuple[tuple[float, float], ...]


class MockRequestError(Exception):
    """A request the mock cannot answer (HTTP 400 with this message)."""


class InjectedServerError(Exception):
    """A fault injected on purpose (HTTP 500)."""


def _plain(text: str) -> str:
    return SPAN.sub("", text).strip()


def _stable_random(*parts: Any) -> random.Random:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _digest(messages: list[dict[str, Any]]) -> str:
    """sha256 of `json.dumps(messages, sort_keys=True)`, the first 16 hex digits: what a sample of the oracle
    depends on. Hashed as that text's pieces (`[`, each message joined by `, `, `]`), with the hash of the
    first piece remembered by its system prompt: every call of an agent resends it (~15 KB in ToolWOZ)."""
    first = messages[0]
    if first.keys() != {"role", "content"} or not all(type(v) is str for v in first.values()):
        return hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:16]
    key = (first["role"], first["content"])
    state = _OPENINGS.get(key)
    if state is None:
        state = hashlib.sha256(("[" + json.dumps(first, sort_keys=True)).encode())
        if len(_OPENINGS) >= 256:
            _OPENINGS.clear()
        _OPENINGS[key] = state
    digest = state.copy()
    rest = json.dumps(messages[1:], sort_keys=True, default=str)  # "[b, c]": the text goes on ", b, c]"
    digest.update((", " + rest[1:] if len(messages) > 1 else "]").encode())
    return digest.hexdigest()[:16]


_IDS = random.Random()  # response ids: unique enough for a test double, without uuid4's system call
_OPENINGS: dict[tuple[str, str], Any] = {}  # hashes of "[" and a first message (see `_digest`)


def _content(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if type(content) is str:  # nearly every message: the quick way out
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _chunks(goal_messages: Any) -> tuple[str, ...]:
    """The goal, in up to three pieces the customer reveals one per turn."""
    lines = [_plain(m) for m in goal_messages if _plain(m)]
    size = max(1, -(-len(lines) // 3))
    return tuple(" ".join(lines[i : i + size]) for i in range(0, len(lines), size))


@dataclass(frozen=True)
class MockCall:
    """One call the oracle agent makes (a goal call of the task)."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class MockScript:
    """What the scripted policies play on one task."""

    task_id: str
    agent_calls: tuple[MockCall, ...]  # the oracle's calls, in order (at most two a turn)
    customer_lines: tuple[str, ...]  # what the customer reveals, one a turn
    goal_text: str = ""  # found in the goal customer's prompt when no task id is sent
    closing: str = ""  # what the agent adds to its last message (facts the task wants told)
    customer_prompt: str | None = None  # the customer's whole system prompt, when the environment gives one
    stop: str = END_CONVERSATION  # what the customer says to hang up
    patience: int = 2  # lines the customer says after its last piece before it hangs up anyway
    # The customer's own tool calls (tau2's telecom: its phone), in groups it makes in one reply, each with
    # how many of the oracle's calls come before it: a group with none before it is made on the customer's
    # first turn; any other when the oracle, having made that many calls, hands over (HANDOVER_PHRASE).
    customer_actions: tuple[tuple[int, tuple[MockCall, ...]], ...] = ()

    @property
    def handovers(self) -> frozenset[int]:
        """After how many of its calls the oracle stops its turn for the customer's actions."""
        return frozenset(after for after, _ in self.customer_actions if after > 0)


def toolwoz_script(task: Task) -> MockScript:
    """A ToolWOZ task's script: its goal calls, its goal messages in up to three pieces."""
    return MockScript(
        task_id=task.task_id,
        agent_calls=tuple(MockCall(g.name, dict(g.arguments)) for g in task.goal_calls),
        customer_lines=_chunks(task.goal_messages),
        goal_text="\n".join(task.goal_messages),
    )


class ScriptedToolWOZ:
    """Answers chat-completion requests as a scripted agent or customer for one task each.

    `env` gives the tasks (`task(id)`, `tasks("all")`); `script` makes each task's `MockScript`
    (default: ToolWOZ's)."""

    def __init__(
        self,
        env: Any,
        config: MockConfig | None = None,
        *,
        script: Callable[[Any], MockScript] = toolwoz_script,
    ):
        self.env = env
        self.script = script
        self.config = config or MockConfig()
        self._faults = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._goal_index: dict[str, str] | None = None
        self._opening_index: dict[str, str] | None = None
        self._paper_markers: PromptMarkers | None = None
        self._paper_loaded = False
        self._paper_lock = threading.Lock()
        self._scripts: dict[str, MockScript] = {}  # by task id: made once, not on every request

    def _paper(self) -> PromptMarkers | None:
        """The paper's markers, read from the wheel once, on first need (never for josh's prompts)."""
        if not self._paper_loaded:
            # Once, even if threads ask together (`complete` may be called from any thread): a read costs
            # ~0.2 s.
            with self._paper_lock:
                if not self._paper_loaded:
                    self._paper_markers = paper_markers()
                    self._paper_loaded = True
        return self._paper_markers

    # -- entry point ----------------------------------------------------------------------------------

    def complete(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """The response body for one `/v1/chat/completions` request. May sleep (latency, hangs) or raise.

        The answer is ready `latency_s` after the call began, its own making included (as a server's
        response time includes its work): made first, then the rest of the latency waited."""
        started, draws, response = self._made(body, headers)
        if rest := self._rest_of_latency(started):
            time.sleep(rest)
        if response is None:
            raise InjectedServerError(INJECTED_500)
        if draws.hang:
            time.sleep(self.config.hang_s)
        return response

    async def complete_async(
        self, body: dict[str, Any], headers: dict[str, str], *, arrived: float | None = None
    ) -> dict[str, Any]:
        """`complete` for a server on an event loop: the latency and hangs are awaited, not slept. The latency
        counts from `arrived` (`time.perf_counter()` as the server began reading the request), if given."""
        started, draws, response = self._made(body, headers, arrived)
        if rest := self._rest_of_latency(started):
            await asyncio.sleep(rest)
        if response is None:
            raise InjectedServerError(INJECTED_500)
        if draws.hang:
            await asyncio.sleep(self.config.hang_s)
        return response

    def _made(
        self, body: dict[str, Any], headers: dict[str, str], arrived: float | None = None
    ) -> tuple[float, Draws, dict[str, Any] | None]:
        """When the call began (`arrived`, else now), its draws, and its answer (None when the draws inject an
        HTTP 500)."""
        started = time.perf_counter() if arrived is None else arrived
        draws = self.draw(body)
        return started, draws, None if draws.error else self.answer(body, headers, draws)

    def _rest_of_latency(self, started: float) -> float:
        return max(0.0, self.config.latency_s - (time.perf_counter() - started))

    def draw(self, body: dict[str, Any]) -> Draws:
        """Check the request's shape and draw its faults (`MockRequestError` for a request it cannot take)."""
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            raise MockRequestError("the request needs a non-empty 'messages' list")
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise MockRequestError(f"'n' must be a whole number from 1 to {MAX_N}, got {n!r}")
        with self._lock:  # 4 draws a request, 2 more for each further choice (empty, malformed)
            draws = [self._faults.random() for _ in range(4)]
            per_choice = [(draws[2], draws[3])] + [
                (self._faults.random(), self._faults.random()) for _ in range(n - 1)
            ]
        return Draws(
            error=draws[0] < self.config.error_rate,
            hang=draws[1] < self.config.hang_rate,
            per_choice=tuple(per_choice),
        )

    def answer(self, body: dict[str, Any], headers: dict[str, str], draws: Draws) -> dict[str, Any]:
        """The response body for a request `draw` took, with its draws (after any latency or hang)."""
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        headers = {k.lower(): v for k, v in headers.items()}
        per_choice = draws.per_choice
        role, kind = self._role(messages, body, headers)
        task = self._task(role, kind, messages, headers)
        # A model's sample depends on its prompt, its seed and which of the n choices it is.
        prompt = _digest(messages) if role == "agent" else ""
        choices = []
        for index, (empty, malformed) in enumerate(per_choice):
            if empty < self.config.empty_rate:
                reply: dict[str, Any] = {"role": "assistant", "content": ""}
            elif role == "agent":
                sample = (prompt, body.get("seed"), index)
                reply = self._agent(
                    task,
                    kind,
                    messages,
                    headers,
                    malformed=malformed < self.config.malformed_rate,
                    sample=sample,
                )
            else:
                reply = self._user(task, kind, messages, headers, has_tools=bool(body.get("tools")))
            finish = "tool_calls" if reply.get("tool_calls") else "stop"
            choices.append({"index": index, "message": reply, "finish_reason": finish})
        prompt_tokens = sum(len(_content(m)) for m in messages) // 4 + 1
        completion_tokens = sum(len(c["message"].get("content") or "") // 4 + 1 for c in choices)
        return {
            "id": f"chatcmpl-mock-{_IDS.getrandbits(48):012x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or MODEL_NAMES[0]),
            "system_fingerprint": "josh-mock-scripted",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # -- who and what ---------------------------------------------------------------------------------

    def _role(
        self, messages: list[dict[str, Any]], body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[str, str]:
        first = _content(messages[0])
        header = headers.get("x-josh-role", "")
        if self._is_customer_prompt(first, headers):  # with tools too: a customer with its own (telecom)
            return "user", "goal"
        if body.get("tools"):
            return "agent", "fc"
        found = part(first, JOSH_MARKERS)
        # josh's preflight probe holds no prompt of the paper's: no need to read them from the wheel for it
        paper = self._paper() if found is None and first != PROBE_TEXT else None
        found = found or (part(first, paper) if paper else None)
        if found:
            return found
        if header == "agent":
            return "agent", "react"
        raise MockRequestError(
            "josh mock endpoint (scripted): cannot tell whether this request is for the agent or the user; "
            "use josh's ReAct/function-calling agents and user simulators, or send the X-Josh-Role header"
        )

    def _is_customer_prompt(self, first: str, headers: dict[str, str]) -> bool:
        """Whether `first` is the task's own customer system prompt (an environment that gives one)."""
        task_id = headers.get("x-josh-task-id")
        if not task_id:
            return False
        try:
            prompt = self._script(task_id).customer_prompt
        except KeyError:
            return False
        return prompt is not None and first == prompt

    def _script(self, task_id: str) -> MockScript:
        """The task's script (`KeyError` for an unknown task), made on the task's first request."""
        script = self._scripts.get(task_id)
        if script is None:
            script = self._scripts[task_id] = self.script(self.env.task(task_id))
        return script

    def _task(
        self, role: str, kind: str, messages: list[dict[str, Any]], headers: dict[str, str]
    ) -> MockScript:
        task_id = headers.get("x-josh-task-id")
        if not task_id:
            task_id = self._guess_task(role, kind, messages)
        try:
            return self._script(task_id)
        except KeyError:
            raise MockRequestError(f"josh mock endpoint (scripted): unknown task {task_id!r}") from None

    def _guess_task(self, role: str, kind: str, messages: list[dict[str, Any]]) -> str:
        if self._goal_index is None:
            self._goal_index, self._opening_index = {}, {}
            for task in self.env.tasks("all"):
                script = self.script(task)
                self._goal_index.setdefault(script.goal_text, script.task_id)
                self._opening_index.setdefault(self._opening(script), script.task_id)
        assert self._opening_index is not None
        if role == "user":
            text = _content(messages[0])
            for goals, task_id in self._goal_index.items():
                if goals in text:
                    return task_id
        else:
            customer = "user"
            for message in messages:
                if message.get("role") == customer and not _content(message).startswith("APIRETURN"):
                    found = self._opening_index.get(_content(message))
                    if found:
                        return found
                    break
        raise MockRequestError(
            "josh mock endpoint (scripted): cannot tell which task this conversation is about; "
            "send the X-Josh-Task-Id header (josh's clients do)"
        )

    # -- the oracle agent -----------------------------------------------------------------------------

    def _agent(
        self,
        task: MockScript,
        kind: str,
        messages: list[dict[str, Any]],
        headers: dict[str, str],
        *,
        malformed: bool,
        sample: tuple[str, Any, int] = ("", None, 0),
    ) -> dict[str, Any]:
        if kind == "fc":
            made = [m for m in messages if m.get("role") == "tool"]
            last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
            this_turn = sum(1 for m in messages[last_user + 1 :] if m.get("role") == "tool")
        else:
            is_return = [m.get("role") == "user" and _content(m).startswith("APIRETURN") for m in messages]
            made = [m for m, r in zip(messages, is_return, strict=True) if r]
            last_user = max(
                (i for i, m in enumerate(messages) if m.get("role") == "user" and not is_return[i]),
                default=-1,
            )
            this_turn = sum(is_return[last_user + 1 :])
        goals = task.agent_calls
        handing_over = this_turn > 0 and len(made) in task.handovers  # the customer acts next
        if len(made) < len(goals) and this_turn < 2 and not handing_over:
            index = len(made)
            goal = goals[index]
            arguments = self._maybe_mistaken(task, index, goal.arguments, headers, sample)
            if kind == "fc":
                raw = json.dumps(arguments)
                if malformed:
                    raw = raw[:-1] + ', "oops": '  # truncated JSON
                call = {
                    "id": f"call_{index}",
                    "type": "function",
                    "function": {"name": goal.name, "arguments": raw},
                }
                return {"role": "assistant", "content": None, "tool_calls": [call]}
            payload = json.dumps({"name": goal.name, "parameters": arguments})
            if malformed:
                payload = payload[:-2]
            return {
                "role": "assistant",
                "content": f"PLAN I will call {goal.name} with what the customer asked for. {COMMAND_END} "
                f"APICALL {payload} {COMMAND_END}",
            }
        closing = f" {task.closing}" if task.closing else ""
        if handing_over:
            text = HANDOVER_PHRASE
        elif len(made) >= len(goals):
            text = f"{DONE_PHRASE}{closing} Is there anything else?"
        else:
            text = ASK_PHRASE
        if kind == "fc":
            return {"role": "assistant", "content": text}
        return {
            "role": "assistant",
            "content": f"PLAN I will update the customer. {COMMAND_END} SPEAK {text} {COMMAND_END}",
        }

    def _maybe_mistaken(
        self,
        task: MockScript,
        index: int,
        arguments: dict[str, Any],
        headers: dict[str, str],
        sample: tuple[str, Any, int] = ("", None, 0),
    ) -> dict[str, Any]:
        """The goal call's arguments, or with a wrong value at `mistake_rate`. The draw is fixed by the task,
        the goal, the trial, the mock's seed and the sample (a digest of the prompt, the request's seed and
        the choice's index): like a model's samples, a rerun makes the same mistakes, while the choices of an
        `n` request, calls with other seeds and calls with other prompts draw afresh."""
        rng = _stable_random(task.task_id, index, headers.get("x-josh-trial", "0"), self.config.seed, *sample)
        if rng.random() >= self.config.mistake_rate:
            return dict(arguments)
        wrong = dict(arguments)
        if wrong:
            key = rng.choice(sorted(wrong))
            wrong[key] = "wrong value"
        else:
            wrong["name"] = "nowhere"
        return wrong

    # -- the scripted customer ------------------------------------------------------------------------

    def _opening(self, task: MockScript) -> str:
        chunks = task.customer_lines
        return f"Hi! {chunks[0]}" if chunks else "Hi!"

    def _customer_action(self, task: MockScript, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The customer's next group of tool calls, when it is due now (else None). Its own calls so far are
        the tool results in its view; the agent's lines are `user` messages there."""
        if not task.customer_actions or (messages and messages[-1].get("role") == "tool"):
            return None
        done = sum(1 for m in messages if m.get("role") == "tool")
        agent_lines = [_content(m) for m in messages if m.get("role") == "user"]
        handed_over = bool(agent_lines) and HANDOVER_PHRASE in agent_lines[-1]
        start = 0
        for after, calls in task.customer_actions:
            if start == done:
                if after > 0 and not handed_over:
                    return None
                tool_calls = [
                    {
                        "id": f"user_call_{start + i}",
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for i, call in enumerate(calls)
                ]
                return {"role": "assistant", "content": None, "tool_calls": tool_calls}
            start += len(calls)
        return None

    def _user(
        self,
        task: MockScript,
        kind: str,
        messages: list[dict[str, Any]],
        headers: dict[str, str],
        *,
        has_tools: bool = False,
    ) -> dict[str, Any]:
        if kind == "goal" and has_tools:
            action = self._customer_action(task, messages)
            if action is not None:
                return action
        if kind == "guide":
            prompt = _content(messages[-1])
            convo = current_convo(prompt, JOSH_MARKERS)
            if convo is None:
                paper = self._paper()
                convo = (current_convo(prompt, paper) if paper else None) or prompt
            said = sum(1 for line in convo.splitlines() if line.startswith("agent: "))  # the customer's lines
            agent_done = DONE_PHRASE in convo
        else:
            # The customer's own lines are `assistant` here: the simulator sees the conversation flipped (its
            # tool calls are `assistant` messages too: not lines).
            said = sum(1 for m in messages if m.get("role") == "assistant" and not m.get("tool_calls"))
            agent_lines = [_content(m) for m in messages if m.get("role") == "user"]
            agent_done = bool(agent_lines) and DONE_PHRASE in agent_lines[-1]
        chunks = task.customer_lines
        if said == 0:
            text = self._opening(task)
        elif agent_done or said >= len(chunks) + task.patience:
            text = f"Thank you, that is all I needed. {task.stop}"
        elif said < len(chunks):
            text = chunks[said]
        else:
            text = "Is everything I asked for booked?"
        if messages and messages[-1].get("role") == "tool":  # it has just acted on its phone
            text = f"{ACTED_PHRASE} {text}"
        if kind == "guide":
            quote, hang_up, _ = text.partition(task.stop)
            text = f'Advice:\nStay on the source conversation.\nSuggested quote:\n"{quote.strip()}" {hang_up}'.strip()
        return {"role": "assistant", "content": text}
