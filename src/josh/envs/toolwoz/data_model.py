"""ToolWOZ task records: goal calls, tasks and the result of scoring a conversation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DOMAINS = ("restaurant", "hotel", "attraction", "train")
"""Domains with a database and tools. Taxi, police and hospital dialogues are not ToolWOZ tasks."""

SPLITS = ("test", "full_test", "val", "train")
"""`test` is the first 450 eligible test ids (sorted), `full_test` all 805 of them."""

# Values the reference treats as "no value": no filter in a search, ignored in comparisons.
EMPTY_VALUES = ("", "dont care", "not mentioned", "don't care", "dontcare", "do n't care")


def unique_id_key(domain: str) -> str:
    """The field that names an entity of `domain`."""
    return "trainID" if domain == "train" else "name"


def is_empty(value: Any) -> bool:
    """True for the strings the reference reads as "no value" (case-sensitive, as the reference)."""
    return isinstance(value, str) and value in EMPTY_VALUES


def normalise(value: Any) -> Any:
    """Lower-case a string and strip its apostrophes; leave any other value as it is."""
    return value.lower().replace("'", "") if type(value) is str else value


def is_subset(subset: dict[str, Any], main: dict[str, Any]) -> bool:
    """The reference's `is_subset`: every non-empty item of `subset` is in `main`, after normalising both."""
    cleaned_main = {k: normalise(v) for k, v in main.items() if not is_empty(v)}
    for key, value in subset.items():
        if is_empty(value):
            continue
        if key not in cleaned_main:
            return False
        other = cleaned_main[key]
        value = normalise(value)
        if not (other is value or other == value):
            return False
    return True


@dataclass(frozen=True)
class GoalCall:
    """One API call the user's goal requires, worth one sparse reward.

    `parameters` holds every parameter of the API ("" where the goal is silent), exactly as the
    reference; `arguments` only the non-empty ones. A booking goal also carries the entity the
    dialogue booked (`unique_id`) and what a correct booking call returns (`returns`).
    """

    name: str
    parameters: dict[str, Any]
    returns: dict[str, Any] | None = None
    unique_id: Any = None

    @property
    def domain(self) -> str:
        return self.name.split("_", 1)[1]

    @property
    def action(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def arguments(self) -> dict[str, Any]:
        return {k: v for k, v in self.parameters.items() if not is_empty(v)}

    def to_dict(self) -> dict[str, Any]:
        """The public JSON form: the API name and the goal's non-empty arguments."""
        return {"name": self.name, "arguments": self.arguments}

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access (`goal["name"]`) for code that treats goal calls as JSON."""
        return self.to_dict()[key]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GoalCall:
        return cls(
            name=data["name"],
            parameters=data["parameters"],
            returns=data.get("returns"),
            unique_id=data.get("unique_id"),
        )

    def to_storage(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.returns is not None:
            out["returns"] = self.returns
            out["unique_id"] = self.unique_id
        return out


@dataclass(frozen=True)
class Turn:
    """One turn of the original MultiWOZ dialogue."""

    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Task:
    """A ToolWOZ task: one MultiWOZ dialogue's goal, turned into goal API calls."""

    task_id: str
    split: str
    goal_messages: tuple[str, ...]
    goal_calls: tuple[GoalCall, ...]
    requested: dict[str, list[str]] = field(default_factory=dict)
    turns: tuple[Turn, ...] = ()

    @property
    def domains(self) -> list[str]:
        """Domains of the goal, in the order of its goal calls."""
        seen: list[str] = []
        for goal in self.goal_calls:
            if goal.domain not in seen:
                seen.append(goal.domain)
        return seen

    def goal(self, name: str) -> GoalCall | None:
        """The goal call of API `name`, if the goal has one."""
        for goal in self.goal_calls:
            if goal.name == name:
                return goal
        return None

    def to_dict(self, *, split: str | None = None, turns: bool = True) -> dict[str, Any]:
        """JSON form, as `josh data tasks` prints it."""
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "split": split or self.split,
            "goal_calls": [g.to_dict() for g in self.goal_calls],
            "bookings": {
                g.name: {"unique_id": g.unique_id, "returns": g.returns} for g in self.goal_calls if g.returns
            },
            "goal_messages": list(self.goal_messages),
            "requested": self.requested,
        }
        if turns:
            out["turns"] = [{"role": t.role, "text": t.text} for t in self.turns]
        return out

    def to_storage(self) -> dict[str, Any]:
        return {
            "goal_messages": list(self.goal_messages),
            "goal_calls": [g.to_storage() for g in self.goal_calls],
            "requested": self.requested,
            "turns": [[t.role, t.text] for t in self.turns],
        }

    @classmethod
    def from_storage(cls, task_id: str, split: str, data: dict[str, Any]) -> Task:
        return cls(
            task_id=task_id,
            split=split,
            goal_messages=tuple(data["goal_messages"]),
            goal_calls=tuple(GoalCall.from_dict(g) for g in data["goal_calls"]),
            requested=data["requested"],
            turns=tuple(Turn(role, text) for role, text in data["turns"]),
        )
