"""The ToolWOZ environment: tasks, per-conversation sessions, tool calls, sparse rewards and the score."""

from __future__ import annotations

import contextlib
import copy
import json
import reprlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from josh.envs.toolwoz.data_model import SPLITS, GoalCall, Task, is_empty, is_subset, unique_id_key
from josh.envs.toolwoz.paper_split import PAPER_TRAIN, paper_train_ids
from josh.envs.toolwoz.store import ToolWOZStore, open_store
from josh.envs.toolwoz.tasks import strip_suffix
from josh.envs.toolwoz.tools import ToolResult, ToolWOZTools, plain_text
from josh.errors import JoshError, ProtocolViolation, UnknownTaskError
from josh.types import bounded

SPLIT_CHOICES = (*SPLITS, PAPER_TRAIN, "all")
Crediting = Literal["turn", "call"]
CREDITING_CHOICES: tuple[Crediting, ...] = ("turn", "call")
STOP_TOKENS = ("END_CONVERSATION",)  # the reference's hang-up word (`josh.users.prompts.END_CONVERSATION`)


@dataclass(frozen=True)
class CallRecord:
    """One tool call of a conversation: what was asked, what came back, which goal calls it met."""

    name: Any
    arguments: Any
    result: ToolResult
    rewards: tuple[str, ...] = ()

    @property
    def returned(self) -> Any:
        """What the reference keeps of a result for scoring: a search's first record (or None)."""
        if isinstance(self.name, str) and self.name.startswith("search_") and isinstance(self.result, list):
            return self.result[0] if self.result else None
        return self.result

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "rewards": list(self.rewards),
        }


def _search_goal_met(goal: GoalCall, call: CallRecord, booked_id: Any) -> bool:
    """The reference's `_test_search_apis` for one call; `booked_id` is "" when the goal books nothing."""
    returned = call.returned
    if (
        not returned
        or isinstance(returned, str)
        or call.name != goal.name
        or not isinstance(call.arguments, dict)
    ):
        return False
    goal_params = {k: v for k, v in goal.parameters.items() if not is_empty(v)}
    key = unique_id_key(goal.domain)
    if is_subset(goal_params, call.arguments):
        return _no_booking(booked_id) or booked_id == _get(returned, key)
    if is_subset(call.arguments, goal_params):
        if _no_booking(booked_id):
            return isinstance(returned, dict) and is_subset(goal_params, returned)
        return booked_id == _get(returned, key)
    return False


def _no_booking(booked_id: Any) -> bool:
    try:
        return len(booked_id) == 0
    except TypeError:
        return False


def _get(returned: Any, key: str) -> Any:
    return returned.get(key) if isinstance(returned, dict) else None


def _book_goal_met(goal: GoalCall, call: CallRecord) -> bool:
    """The reference's `_test_book_apis`: any call of the API whose arguments hold the goal's."""
    if call.name != goal.name or not isinstance(call.arguments, dict):
        return False
    return is_subset({k: v for k, v in goal.parameters.items() if not is_empty(v)}, call.arguments)


def goal_met(goal: GoalCall, call: CallRecord, goals: list[GoalCall] | tuple[GoalCall, ...]) -> bool:
    """Whether `call` meets `goal`, given the goal calls still in play (the booked entity comes from them)."""
    if goal.action == "book":
        return _book_goal_met(goal, call)
    booking = next((g for g in goals if g.name == f"book_{goal.domain}"), None)
    return _search_goal_met(goal, call, booking.unique_id if booking is not None else "")


@dataclass
class SessionSnapshot:
    """Everything a session's future depends on; restoring one makes the session continue from there."""

    calls: tuple[CallRecord, ...]
    pending: tuple[GoalCall, ...]
    reward_events: tuple[GoalCall, ...]
    turn_met: tuple[GoalCall, ...] = ()


@dataclass
class ToolWOZSession:
    """One conversation's state: the calls made so far and the goal calls met so far.

    Tool results never alias internal state: each call returns a fresh object.

    `crediting` says when a met goal call leaves the pending set, which decides what later calls can earn:
    - `call` (evaluation): at once, so the next call of the same turn is judged without it;
    - `turn` (the reference's JOSH search): every call of an agent turn is judged against the goal calls
      pending when the turn began (a search's booked entity still comes from a booking goal met earlier in
      the same turn), and the goals the turn met leave the pending set when it ends. A turn ends when either
      side speaks (`say`): the agent's reply closes its turn. `reward_events` still grow call by call, each
      goal once, credited to the first call of the turn that met it.
    The score (`score`, `met_goals`) does not depend on it.
    """

    task: Task
    executor: ToolWOZTools = field(repr=False)
    tool_schemas: list[dict[str, Any]] = field(repr=False)
    calls: list[CallRecord] = field(default_factory=list)
    reward_events: list[GoalCall] = field(default_factory=list)
    pending: list[GoalCall] = field(default_factory=list)
    strict: bool = False  # raise ProtocolViolation where the reference crashes (see `reference_crash`)
    crediting: Crediting = "call"
    turn_met: list[GoalCall] = field(default_factory=list)  # `turn` crediting: met in the open turn

    def __post_init__(self) -> None:
        if not self.pending and not self.calls:
            self.pending = list(self.task.goal_calls)

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The OpenAI function schemas of the 8 ToolWOZ tools (the official `tools.json`)."""
        return copy.deepcopy(self.tool_schemas)

    @property
    def stop_tokens(self) -> tuple[str, ...]:
        """What the customer says to end the conversation (the paper's user simulators say END_CONVERSATION)."""
        return STOP_TOKENS

    def result_text(self, result: Any) -> str:
        """How a tool result is shown to the agent: JSON text, as the paper's agents show it (`APIRETURN `
        + this for ReAct, a tool message's content for function calling)."""
        return json.dumps(result)

    def say(self, role: str, content: Any) -> None:
        """What the agent or the customer said: ToolWOZ scores tool calls only, so nothing is kept; with
        `turn` crediting, it closes the open turn (its met goals leave the pending set)."""
        self.end_turn()

    def end_turn(self) -> None:
        """Close the open turn: the goal calls it met stop being pending (a no-op with `call` crediting)."""
        if self.turn_met:
            self.pending = [g for g in self.pending if g not in self.turn_met]
            self.turn_met = []

    @property
    def opening(self) -> str | None:
        """The agent's first line: none (in the paper, the customer opens)."""
        return None

    def final_reward(self, ended: bool) -> float:
        """The conversation's reward: its score, whether or not the customer hung up (the paper scores a
        conversation that hit the turn limit by the calls it made)."""
        return self.score()

    def call(self, name: Any, arguments: Any = None) -> ToolResult:
        """Run one tool call and return its result; a reward event fires for each goal call it meets.

        `arguments` may be a dict, a JSON string (as a model emits it), or None (no arguments). Never raises,
        whatever it is given: what no JSON parser makes gets an error result, and the call is recorded as
        JSON (`bounded`), so scoring, snapshots and run files never meet the original object.
        """
        if arguments is None:
            arguments = {}
        else:
            text = plain_text(arguments)
            if text is not None:
                arguments = _parse_arguments(text)
        result = self.executor.execute(self.task, name, arguments)
        record = CallRecord(name=bounded(name), arguments=bounded(arguments), result=copy.deepcopy(result))
        met = [g for g in self.pending if g not in self.turn_met and goal_met(g, record, self.pending)]
        if met:
            record = CallRecord(record.name, record.arguments, record.result, tuple(g.name for g in met))
            if self.crediting == "turn":
                self.turn_met.extend(met)
            else:
                self.pending = [g for g in self.pending if g not in met]
            self.reward_events.extend(met)
        self.calls.append(record)
        if self.strict and (crash := reference_crash(name, result)):
            raise ProtocolViolation(crash)
        return result

    def met_goals(self) -> list[GoalCall]:
        """Goal calls met by any call so far, judged as the paper's final evaluation does."""
        goals = self.task.goal_calls
        return [g for g in goals if any(goal_met(g, c, goals) for c in self.calls)]

    def failed_goals(self) -> list[GoalCall]:
        met = self.met_goals()
        return [g for g in self.task.goal_calls if g not in met]

    def score(self) -> float:
        """Met goal calls / goal calls, as the paper's `evaluate_apis`."""
        total = len(self.task.goal_calls)
        return len(self.met_goals()) / total if total else 0.0

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            tuple(self.calls), tuple(self.pending), tuple(self.reward_events), tuple(self.turn_met)
        )

    def restore(self, snapshot: SessionSnapshot) -> None:
        self.calls = list(snapshot.calls)
        self.pending = list(snapshot.pending)
        self.reward_events = list(snapshot.reward_events)
        self.turn_met = list(snapshot.turn_met)

    def fork(self) -> ToolWOZSession:
        """An independent copy that continues from this session's state (for beam search)."""
        clone = ToolWOZSession(
            self.task, self.executor, self.tool_schemas, strict=self.strict, crediting=self.crediting
        )
        clone.restore(self.snapshot())
        return clone


def reference_crash(name: Any, result: ToolResult) -> str | None:
    """Why the reference crashes after running this call, or None.

    After every call the reference reads the unique id (`name`, `trainID` for trains) of a search's first
    record; the taxi and hospital databases, which validate but are in no goal, have no such field, so any
    search of them that finds something crashes it (a function-calling model can name them; ReAct cannot)."""
    if (
        not isinstance(name, str)
        or not name.startswith("search_")
        or not isinstance(result, list)
        or not result
    ):
        return None
    key = unique_id_key(name.removeprefix("search_"))
    first = result[0]
    if isinstance(first, dict) and key not in first:
        return f"{name} returned a record without {key!r}, which crashes the reference implementation"
    return None


def _parse_arguments(text: str) -> Any:
    """The JSON value of `text`, or `text` itself when it is not JSON (the call then gets an error result)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, nested too deep, or an integer too long to read
        return text


class ToolWOZEnvironment:
    """All ToolWOZ tasks over one shared read-only store. `ToolWOZEnvironment.load()` fetches lazily."""

    def __init__(self, store: ToolWOZStore):
        self.store = store
        self.executor = ToolWOZTools(store)
        self.tool_schemas: list[dict[str, Any]] = store.meta["tools"]
        self._task_cache: dict[str, Task] = {}
        conn = store.connection()
        self._splits: dict[str, str] = dict(conn.execute("SELECT task_id, split FROM tasks ORDER BY task_id"))

    @classmethod
    def load(cls, report: Callable[[str], None] | None = None) -> ToolWOZEnvironment:
        """Open the cached environment, downloading and building the data first if needed."""
        return cls(open_store(report))

    # -- tasks --------------------------------------------------------------------------------------

    def task_ids(self, split: str = "all") -> list[str]:
        """Task ids of a split, sorted. `full_test` is every eligible test id; `test` the first 450;
        `paper_train` the 926 train tasks the paper harvested (read from the verified wheel)."""
        if split not in SPLIT_CHOICES:
            raise JoshError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
        if split == "all":
            return list(self._splits)
        if split == PAPER_TRAIN:
            ids = list(paper_train_ids())
            stray = [t for t in ids if self._splits.get(t) != "train"]
            if stray:
                raise JoshError(f"the paper's harvest tasks include {len(stray)} that are not train tasks here, "
                                f"e.g. {stray[0]}: the cache does not match josh-train 0.1.4")
            return ids
        wanted = {"test", "full_test"} if split == "full_test" else {split}
        return [t for t, s in self._splits.items() if s in wanted]

    def task(self, task_id: str) -> Task:
        """The task with this id (`MUL0003`, or `MUL0003.json` as in the MultiWOZ files)."""
        text = plain_text(task_id)
        if text is None:
            raise UnknownTaskError(f"task id must be a string, got {type(task_id).__name__}")
        key = strip_suffix(text)
        cached = self._task_cache.get(key)
        if cached is not None:
            return cached
        row = None
        with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: no task has it
            row = (
                self.store.connection()
                .execute("SELECT split, data FROM tasks WHERE task_id = ?", (key,))
                .fetchone()
            )
        if row is None:
            shown = reprlib.repr(text)
            raise UnknownTaskError(
                f"unknown ToolWOZ task {shown}; `josh data tasks --split all` lists the {len(self._splits):,} ids"
            )
        task = Task.from_storage(key, row[0], json.loads(row[1]))
        self._task_cache[key] = task
        return task

    def tasks(self, split: str = "all") -> Iterator[Task]:
        for task_id in self.task_ids(split):
            yield self.task(task_id)

    def __len__(self) -> int:
        return len(self._splits)

    # -- sessions -----------------------------------------------------------------------------------

    def session(self, task_id: str, *, strict: bool = False, crediting: Crediting = "call") -> ToolWOZSession:
        """A fresh conversation state for one task. With `strict`, a call the reference crashes on raises
        `ProtocolViolation` after it is recorded (the paper's protocol scores such a conversation 0).
        `crediting`: when a met goal call stops being pending (see `ToolWOZSession`)."""
        if crediting not in CREDITING_CHOICES:
            raise JoshError(f"unknown crediting {crediting!r}; choose one of {', '.join(CREDITING_CHOICES)}")
        return ToolWOZSession(
            self.task(task_id), self.executor, self.tool_schemas, strict=strict, crediting=crediting
        )
