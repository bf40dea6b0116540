"""The tau2-bench environments (airline, retail, telecom) under josh's environment protocol.

tau2 does the work: its environments run the tools (`Environment.get_response`), its tasks say what the
customer wants and what must happen, and its evaluators give the final score. josh adds what JOSH needs:
sparse reward events (the task's goal actions, met strictly), and cheap branching (copy-on-first-write:
sessions, snapshots and forks share one tau2 environment until a call that can write runs).

Evaluation (`Tau2Session.evaluate`) is tau2's `evaluate_simulation(..., EvaluationType.ALL)` over the
session's trajectory, composed from the same evaluator classes (`tau2.evaluator.evaluator` itself imports
litellm through tau2's registry, which the light install leaves out):

- deterministic, run here: DB (the end state's hash against the gold actions' replay, which also checks that
  every recorded tool result replays verbatim; the gold replay is done once per task, see `evaluation`),
  ENV_ASSERTION (telecom), ACTION (telecom's `ACTION` basis),
  COMMUNICATE (each `communicate_info` string must appear in some agent message: record them with `say`);
- needs a model: NL_ASSERTION (an LLM judge; in no base task's reward basis: such a task raises `JoshError`).

tau2 also gives 0 to a conversation that did not end by a stop (max steps, too many errors): deciding how a
conversation ended is the rollout's part, so `evaluate` scores the trajectory as if it ended properly, and
`final_reward(ended)` applies tau2's rule to what the rollout says (the customer's `stop_tokens`).
"""

from __future__ import annotations

import copy
import json
import reprlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from josh.envs.tau2.data_model import (
    AGENT_GREETING,
    SPLITS,
    STOP_TOKENS,
    CallRecord,
    GoalAction,
    Requestor,
    Tau2Task,
    TextRecord,
)
from josh.envs.tau2.evaluation import GoldCache, environment_reward
from josh.envs.tau2.paths import DOMAINS
from josh.envs.tau2.tasks import domain_module, load_domain_tasks, to_task
from josh.envs.tau2.tools import (
    ArgumentsError,
    SharedState,
    error_result,
    pure_tools,
    tau2_arguments,
    tool_name,
    tool_schemas,
)
from josh.errors import JoshError, ProtocolViolation, UnknownTaskError
from josh.types import bounded, clean_text

SPLIT_CHOICES = (*SPLITS, "all")
_SCORE_CACHE_SIZE = 512

Record = CallRecord | TextRecord


@dataclass(frozen=True)
class Tau2Snapshot:
    """Everything a session's future depends on. `state` is the shared tau2 environment (compared by
    identity: two snapshots are equal when they share it)."""

    records: tuple[Record, ...]
    pending: tuple[GoalAction, ...]
    reward_events: tuple[GoalAction, ...]
    state: SharedState


class Tau2Session:
    """One conversation on a tau2 task: the tool calls (agent's and customer's) and messages so far, the goal
    actions met so far, and the tau2 environment they acted on.

    Tool results are tau2's tool message content, verbatim (strings), so the trajectory tau2's evaluator
    replays is the one the agent saw.
    """

    def __init__(self, owner: Tau2Environment, task: Tau2Task, state: SharedState, strict: bool = False):
        self._owner = owner
        self.task = task
        self.strict = strict  # raise ProtocolViolation (after recording) on a call tau2 cannot represent
        self._state: SharedState | None = state  # set while `_env` is shared: copy before a write
        self._env: Any = state.environment
        self.records: list[Record] = []
        self.pending: list[GoalAction] = list(task.goal_actions)
        self.reward_events: list[GoalAction] = []

    @property
    def task_id(self) -> str:
        return self.task.task_id

    # -- tools ---------------------------------------------------------------------------------------

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The agent's tools, as OpenAI function schemas (tau2's `Tool.openai_schema`)."""
        return copy.deepcopy(self._owner.tool_schemas)

    @property
    def user_tools(self) -> list[dict[str, Any]]:
        """The customer's tools (telecom: the phone they act on), as OpenAI function schemas; [] elsewhere."""
        return copy.deepcopy(self._owner.user_tool_schemas)

    def call(self, name: Any, arguments: Any = None) -> str:
        """Run one of the agent's tool calls through tau2 and return its result (tau2's content, verbatim).

        `arguments` may be a dict, JSON text (as a model emits it) or None. Never raises, whatever it is
        given (except `ProtocolViolation` under `strict`): tau2 answers its own errors ("Error: ..."), and a
        call tau2 cannot represent (a name that is not a string, arguments that are not a JSON object) gets
        an error result in tau2's words without running."""
        return self._run(name, arguments, "assistant")

    def user_call(self, name: Any, arguments: Any = None) -> str:
        """Run one of the customer's tool calls (requestor "user": telecom's phone), as `call` does."""
        return self._run(name, arguments, "user")

    @property
    def stop_tokens(self) -> tuple[str, ...]:
        """What the customer says to end the conversation (tau2's stop, transfer and out-of-scope tokens)."""
        return STOP_TOKENS

    @property
    def opening(self) -> str | None:
        """The agent's first line: tau2's orchestrator starts every simulation with the agent's greeting."""
        return AGENT_GREETING

    def result_text(self, result: Any) -> str:
        """How a tool result is shown to the agent: tau2's tool-message content as it is (quoting it again
        would change what the agent sees). A result that is not a string (none of tau2's) is shown as JSON."""
        return result if isinstance(result, str) else json.dumps(bounded(result))

    def final_reward(self, ended: bool) -> float:
        """The conversation's reward: tau2's score when the customer ended it with a stop token, else 0.0
        (tau2's `evaluate_simulation` gives 0 to a simulation that ended any other way)."""
        return self.score() if ended else 0.0

    def say(self, role: Requestor, content: Any) -> None:
        """Record what the agent ("assistant") or the customer ("user") said, in order with the calls: tau2's
        communicate check reads the agent's messages."""
        if role not in ("assistant", "user"):
            raise ValueError(f"role must be 'assistant' or 'user', got {role!r}")
        text = content if isinstance(content, str) else json.dumps(bounded(content))
        self.records.append(TextRecord(role, clean_text(text)))

    def _run(self, name: Any, arguments: Any, requestor: Requestor) -> str:
        text = tool_name(name)
        problem = None
        args: dict[str, Any] = {}
        try:
            args = tau2_arguments(arguments)
        except ArgumentsError as exc:
            problem = str(exc)
        if text is None:
            problem = f"the tool name must be a string, got {type(name).__name__}"
        if problem is None:
            assert text is not None
            record = self._execute(text, args, requestor)
        else:
            record = CallRecord(bounded(name), bounded(arguments), error_result(problem), True, requestor)
        self.records.append(record)
        if self.strict and record.call_id is None:
            raise ProtocolViolation(f"a tool call tau2 cannot represent: {problem}")
        return record.result

    def _execute(self, name: str, args: dict[str, Any], requestor: Requestor) -> CallRecord:
        from tau2.data_model.message import ToolCall

        pure = self._owner.pure_user_tools if requestor == "user" else self._owner.pure_tools
        if name not in pure:
            self._own()
        call_id = f"call_{sum(1 for r in self.records if isinstance(r, CallRecord) and r.call_id)}"
        request = ToolCall(id=call_id, name=name, arguments=copy.deepcopy(args), requestor=requestor)
        try:
            answer = self._env.get_response(request)
        except Exception as exc:  # tau2 catches a tool's errors; this is its serialisation failing
            return CallRecord(name, args, error_result(f"{type(exc).__name__}: {exc}"), True, requestor)
        met = next((g for g in self.pending if g.met_by(name, requestor, args)), None)
        rewards: tuple[str, ...] = ()
        if met is not None:
            self.pending.remove(met)
            self.reward_events.append(met)
            rewards = (met.name,)
        return CallRecord(name, args, answer.content, bool(answer.error), requestor, call_id, rewards)

    def _own(self) -> None:
        """Make the environment private before a call that may write (copy-on-first-write)."""
        if self._state is not None:
            self._env = self._state.thaw()
            self._state = None

    # -- what happened ------------------------------------------------------------------------------

    @property
    def calls(self) -> list[CallRecord]:
        """The agent's tool calls, in order (what `call` ran; the rollout pairs them with its turns)."""
        return [r for r in self.records if isinstance(r, CallRecord) and r.requestor == "assistant"]

    @property
    def user_calls(self) -> list[CallRecord]:
        """The customer's tool calls, in order."""
        return [r for r in self.records if isinstance(r, CallRecord) and r.requestor == "user"]

    def met_goals(self) -> list[GoalAction]:
        """Goal actions met so far, in the task's order (each goal by its own call: a multiset)."""
        met = list(self.reward_events)
        out = []
        for goal in self.task.goal_actions:
            if goal in met:
                met.remove(goal)
                out.append(goal)
        return out

    def failed_goals(self) -> list[GoalAction]:
        """Goal actions not met (yet), in the task's order."""
        return list(self.pending)

    def tau2_messages(self) -> list[Any]:
        """The trajectory as tau2 messages: the task's initial history, then each message said and each
        call tau2 ran (an assistant or user message with the tool call, then tau2's tool message)."""
        from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage

        initial = self.task.source.initial_state
        messages: list[Any] = list((initial.message_history if initial is not None else None) or [])
        for r in self.records:
            if isinstance(r, TextRecord):
                kind = AssistantMessage if r.role == "assistant" else UserMessage
                messages.append(kind(role=r.role, content=r.content))
            elif r.call_id is not None:
                kind = AssistantMessage if r.requestor == "assistant" else UserMessage
                request = ToolCall(id=r.call_id, name=r.name, arguments=r.arguments, requestor=r.requestor)
                messages.append(kind(role=r.requestor, tool_calls=[request]))
                messages.append(
                    ToolMessage(
                        id=r.call_id, content=r.result, requestor=r.requestor, role="tool", error=r.error
                    )
                )
        return messages

    def evaluate(self) -> Any:
        """tau2's `RewardInfo` for the trajectory so far (see the module's docstring for what is checked)."""
        return self._owner.evaluate(self)

    def score(self) -> float:
        """tau2's reward for the trajectory so far: 1.0 or 0.0 on tau2's tasks."""
        return float(self.evaluate().reward)

    # -- branching ----------------------------------------------------------------------------------

    def snapshot(self) -> Tau2Snapshot:
        """The session's state; from now on the session and the snapshot share the environment."""
        if self._state is None:
            self._state = SharedState(self._env)
        return Tau2Snapshot(tuple(self.records), tuple(self.pending), tuple(self.reward_events), self._state)

    def restore(self, snapshot: Tau2Snapshot) -> None:
        self.records = list(snapshot.records)
        self.pending = list(snapshot.pending)
        self.reward_events = list(snapshot.reward_events)
        self._state = snapshot.state
        self._env = snapshot.state.environment

    def fork(self) -> Tau2Session:
        """An independent session that continues from here; it copies the environment only when it writes."""
        clone = Tau2Session(self._owner, self.task, self.snapshot().state, strict=self.strict)
        clone.restore(self.snapshot())
        return clone


class Tau2Environment:
    """All tasks of one tau2 domain. `Tau2Environment.load(domain)` imports tau2 and loads the domain once
    per process (telecom's task file is 14 MB: it is parsed once)."""

    _loaded: dict[str, Tau2Environment] = {}
    _load_lock = threading.Lock()

    def __init__(self, domain: str):
        if domain not in DOMAINS:
            raise JoshError(f"unknown tau2 domain {domain!r}; choose one of {', '.join(DOMAINS)}")
        self.domain = domain
        self._module = domain_module(domain)
        pristine = self._module.get_environment()
        self._pristine = SharedState(pristine)
        self.policy: str = pristine.get_policy()
        self.tool_schemas = tool_schemas(pristine.tools)
        self.user_tool_schemas = tool_schemas(pristine.user_tools)
        self.pure_tools = pure_tools(pristine, pristine.tools)
        self.pure_user_tools = pure_tools(pristine, pristine.user_tools)
        sources, self._splits = load_domain_tasks(domain)
        self._sources = {t.id: t for t in sources}
        self._tasks: dict[str, Tau2Task] = {}
        self._initial: dict[str, SharedState] = {}
        self._scores: OrderedDict[str, Any] = OrderedDict()
        self._gold = GoldCache(self.fresh_environment)  # the gold half of tau2's DB check, once per task
        self._lock = threading.Lock()

    @classmethod
    def load(cls, domain: str) -> Tau2Environment:
        """The environment of `domain` (airline, retail or telecom), loaded once per process."""
        if domain not in DOMAINS:
            raise JoshError(f"unknown tau2 domain {domain!r}; choose one of {', '.join(DOMAINS)}")
        with cls._load_lock:
            if domain not in cls._loaded:
                cls._loaded[domain] = cls(domain)
            return cls._loaded[domain]

    # -- tasks --------------------------------------------------------------------------------------

    def task_ids(self, split: str = "all") -> list[str]:
        """Task ids of a split, in tau2's order: train, test, base (train + test) or all (every task in
        the domain's task file: telecom's holds 2,285, of which 114 are the base set)."""
        if split not in SPLIT_CHOICES:
            raise JoshError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
        if split == "all":
            return list(self._sources)
        wanted = set(self._splits.get(split, ()))
        return [t for t in self._sources if t in wanted]

    def task(self, task_id: str) -> Tau2Task:
        key = task_id if isinstance(task_id, str) else None
        if key is None or key not in self._sources:
            shown = reprlib.repr(task_id) if key is not None else type(task_id).__name__
            raise UnknownTaskError(f"unknown {self.domain} task {shown}; `task_ids('all')` lists them")
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                task = to_task(
                    self.domain, self._sources[key], self._splits, self.policy, bool(self.user_tool_schemas)
                )
                self._tasks[key] = task
        return task

    def tasks(self, split: str = "all") -> Iterator[Tau2Task]:
        for task_id in self.task_ids(split):
            yield self.task(task_id)

    def __len__(self) -> int:
        return len(self._sources)

    # -- sessions -----------------------------------------------------------------------------------

    def session(self, task_id: str, *, strict: bool = False) -> Tau2Session:
        """A fresh conversation on a task: the domain's environment after the task's initial state."""
        task = self.task(task_id)
        return Tau2Session(self, task, self._initial_state(task), strict=strict)

    def _initial_state(self, task: Tau2Task) -> SharedState:
        initial = task.source.initial_state
        needs_setup = initial is not None and (
            initial.initialization_data is not None
            or initial.initialization_actions
            or initial.message_history
        )
        from tau2.environment.environment import Environment

        plain_sync = type(self._pristine.environment).sync_tools is Environment.sync_tools
        if not needs_setup and plain_sync:
            return self._pristine
        with self._lock:
            state = self._initial.get(task.task_id)
            if state is None:
                env = self._pristine.thaw()
                env.set_state(  # as tau2's orchestrator starts a simulation
                    initialization_data=initial.initialization_data if initial else None,
                    initialization_actions=initial.initialization_actions if initial else None,
                    message_history=(initial.message_history if initial else None) or [],
                )
                state = self._initial[task.task_id] = SharedState(env)
        return state

    def fresh_environment(self, solo_mode: bool = False) -> Any:
        """A new tau2 environment of the domain, as tau2's registry constructor gives (for its evaluators)."""
        if solo_mode:
            raise JoshError("tau2's solo mode is not supported")
        return self._pristine.thaw()

    # -- evaluation ---------------------------------------------------------------------------------

    def evaluate(self, session: Tau2Session) -> Any:
        """tau2's `evaluate_simulation(EvaluationType.ALL)` on a session's trajectory (cached: the result
        depends only on the task and the trajectory)."""
        key = json.dumps(
            [
                session.task_id,
                [r.to_dict() if isinstance(r, CallRecord) else [r.role, r.content] for r in session.records],
            ],
            sort_keys=True,
        )
        with self._lock:
            if key in self._scores:
                self._scores.move_to_end(key)
                return self._scores[key]
        info = self._evaluate(session.task, session.tau2_messages())
        with self._lock:
            self._scores[key] = info
            while len(self._scores) > _SCORE_CACHE_SIZE:
                self._scores.popitem(last=False)
        return info

    def _environment_reward(self, source: Any, messages: list[Any]) -> Any:
        """tau2's `EnvironmentEvaluator.calculate_reward` on this domain's environments (the same
        `RewardInfo`), the gold actions' replay computed once per task (`josh.envs.tau2.evaluation`)."""
        return environment_reward(self.fresh_environment, source, messages, lambda: self._gold.get(source))

    def _evaluate(self, task: Tau2Task, messages: list[Any]) -> Any:
        # tau2/evaluator/evaluator.py, `evaluate_simulation` with EvaluationType.ALL, minus the termination
        # check (the rollout's part) and with this environment's constructor instead of the registry's.
        from tau2.data_model.simulation import RewardInfo
        from tau2.data_model.tasks import RewardType
        from tau2.evaluator.evaluator_action import ActionEvaluator
        from tau2.evaluator.evaluator_communicate import CommunicateEvaluator

        source = task.source
        if source.evaluation_criteria is None:
            return RewardInfo(reward=1.0, reward_basis=None, info={"note": "No evaluation criteria"})
        basis = set(source.evaluation_criteria.reward_basis)
        if RewardType.NL_ASSERTION in basis:
            raise JoshError(
                f"task {task.task_id} is scored by natural-language assertions, which need an LLM judge"
            )
        env_info = self._environment_reward(source, messages)
        action_info = ActionEvaluator.calculate_reward(task=source, full_trajectory=messages)
        communicate_info = CommunicateEvaluator.calculate_reward(task=source, full_trajectory=messages)
        reward = 1.0
        breakdown: dict[Any, float] = {}
        for bases, info in (
            ({RewardType.DB, RewardType.ENV_ASSERTION}, env_info),
            ({RewardType.ACTION}, action_info),
            ({RewardType.COMMUNICATE}, communicate_info),
        ):
            if basis & bases:
                if info.reward_breakdown is not None:
                    breakdown.update(info.reward_breakdown)
                reward *= info.reward
        return RewardInfo(
            reward=reward,
            db_check=env_info.db_check,
            env_assertions=env_info.env_assertions,
            action_checks=action_info.action_checks,
            nl_assertions=None,
            communicate_checks=communicate_info.communicate_checks,
            reward_basis=source.evaluation_criteria.reward_basis,
            reward_breakdown=breakdown,
            info={
                "env": env_info.info,
                "nl": None,
                "communicate": communicate_info.info,
                "action": action_info.info,
            },
        )
