"""ToolWOZ tool execution, identical to the reference's `_handle_api_calls`, quirks included.

Results are the reference's: a search returns `[]` or a list of one full database record (missing
fields are `None`, where the reference has NaN); a booking returns `{"success": ..., "return": ...}`;
an invalid call returns the reference's error string. Hostile input never raises.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from functools import cached_property
from typing import Any

from josh.envs.toolwoz.data_model import (
    DOMAINS,
    GoalCall,
    Task,
    is_empty,
    is_subset,
    normalise,
    unique_id_key,
)
from josh.envs.toolwoz.store import ToolWOZStore
from josh.envs.toolwoz.tasks import reference_query

INVALID_API_CALL = (
    "ERROR: INVALID API CALL! YOUR REQUEST CONTAINED PARAMETERS THAT ARE NOT ALLOWED FOR THIS API "
    "or AN IMPROPER API NAME!"
)
INVALID_VALUE = "ERROR: INVALID API CALL! LISTS AND DICTS ARE NOT ALLOWED AS VALUES!"
# The reference crashes on arguments that are not a JSON object; we answer like its other errors.
INVALID_ARGUMENTS = "ERROR: INVALID API CALL! THE ARGUMENTS MUST BE A JSON OBJECT!"
# Values no JSON parser makes (bytes, sets, arbitrary objects): the reference never sees them; same style.
INVALID_VALUE_TYPE = "ERROR: INVALID API CALL! VALUES MUST BE STRINGS, NUMBERS, BOOLEANS OR NULL!"
BOOKING_FAILED: dict[str, Any] = {"success": False, "return": {}}

SearchResult = list[dict[str, Any]]
ToolResult = SearchResult | dict[str, Any] | str


def select(query: _Query, task: Task, domain: str, args: dict[str, Any]) -> SearchResult:
    """The one record a search returns (or none), by the reference's `_serve_search_result_calls` rules.

    "decoy" is the last match that does not satisfy the goal's search; "booked" the last match that is the
    goal's booked entity.
    """
    first = query.first()
    if first is None:
        return []
    search_goal = task.goal(f"search_{domain}")
    if search_goal is None:  # the domain is not in the goal
        return [first]
    booking = task.goal(f"book_{domain}")
    key = unique_id_key(domain)
    if is_subset(search_goal.parameters, args):
        if booking is None:
            return [first]
        found = query.last_with_id(key, booking.unique_id) or query.last_decoy(search_goal)
        return [found] if found else []
    if is_subset(args, search_goal.parameters):
        found = query.last_decoy(search_goal)
        if found is None and booking is not None:
            found = query.last_with_id(key, booking.unique_id)
        return [found or first]
    return [first]


class ToolWOZTools:
    """Executes the ToolWOZ tools against the shared read-only store for one task's goal."""

    def __init__(self, store: ToolWOZStore):
        self.store = store
        api_defs: dict[str, Any] = store.meta["api_defs"]
        # Every API of the reference's definitions validates, taxi and hospital included, as in the reference.
        self.parameters: dict[str, frozenset[str]] = {
            api: frozenset(spec["parameters"]) for defs in api_defs.values() for api, spec in defs.items()
        }

    @cached_property
    def _all_records(self) -> dict[str, list[dict[str, Any]]]:
        conn = self.store.connection()
        out = {}
        for domain in self.store.meta["columns"]:
            rows = conn.execute(f"SELECT record FROM db_{domain} ORDER BY rowid").fetchall()
            out[domain] = [json.loads(r[0]) for r in rows]
        return out

    # -- public -------------------------------------------------------------------------------------

    def execute(self, task: Task, name: Any, arguments: Any) -> ToolResult:
        """The result of calling tool `name` with `arguments` in a conversation about `task`.

        Checks run in the reference's order (name and keys, then list or dict values), so a JSON call gets
        exactly the reference's result; a str, int or float subclass counts as its plain value.
        """
        name = plain_text(name)
        if name is None or name not in self.parameters:
            return INVALID_API_CALL
        if not issubclass(type(arguments), dict):
            return INVALID_ARGUMENTS
        items = [(plain_text(k), v) for k, v in dict.items(arguments)]
        allowed = self.parameters[name]
        if any(key is None or key not in allowed for key, _ in items):
            return INVALID_API_CALL
        if any(issubclass(type(v), list | dict) for _, v in items):
            return INVALID_VALUE
        args = {key: _plain_scalar(v) for key, v in items}
        if any(v is _NOT_JSON for v in args.values()):
            return INVALID_VALUE_TYPE
        action, domain = name.split("_", 1)
        args = {k: normalise(v) for k, v in args.items()}
        if action == "search":
            return self._search(task, domain, args)
        return self._book(task, domain, args)

    # -- search -------------------------------------------------------------------------------------

    def _search(self, task: Task, domain: str, args: dict[str, Any]) -> SearchResult:
        filters = {k: v for k, v in args.items() if isinstance(v, str) and v and not is_empty(v)}
        if domain not in DOMAINS:  # taxi and hospital: never in a goal, not in SQLite
            return select(self.python_query(domain, filters), task, domain, args)
        try:
            return select(_SqlQuery(self.store.connection(), domain, filters), task, domain, args)
        except (UnicodeEncodeError, OverflowError, sqlite3.Error):
            # Strings SQLite cannot hold (lone surrogates): the same rules, over the records in Python.
            return select(self.python_query(domain, filters), task, domain, args)

    def python_query(self, domain: str, filters: dict[str, str]) -> _PythonQuery:
        """The matches of a search, filtered in Python exactly as the reference's `queryDataBase`."""
        return _PythonQuery(reference_query(self._all_records[domain], filters))

    # -- book ---------------------------------------------------------------------------------------

    def _book(self, task: Task, domain: str, args: dict[str, Any]) -> dict[str, Any]:
        booking = task.goal(f"book_{domain}")
        if booking is None or not is_subset(booking.parameters, args):
            return copy.deepcopy(BOOKING_FAILED)
        return {"success": True, "return": copy.deepcopy(booking.returns)}


_NOT_JSON = object()


def plain_text(value: Any) -> str | None:
    """`value` as a plain str when it is a str (or a subclass: its own methods are never called), else None."""
    kind = type(value)  # not isinstance(): a hostile `__class__` can raise
    if kind is str:
        return value
    return str.__str__(value) if issubclass(kind, str) else None


def _plain_scalar(value: Any) -> Any:
    """A JSON scalar as its plain value (str, int, float, bool or None); `_NOT_JSON` for anything else."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is float or kind is bool:
        return value
    if issubclass(kind, str):
        return str.__str__(value)
    if issubclass(kind, int):
        return int.__int__(value)
    if issubclass(kind, float):
        return float.__float__(value)
    return _NOT_JSON


class _SqlQuery:
    """The matches of one search, read lazily: only the records the selection rules need."""

    def __init__(self, conn: sqlite3.Connection, domain: str, filters: dict[str, str]):
        self.conn = conn
        self.table = f"db_{domain}"
        # The reference's trains: `leaveAt` means "leaves after", `arriveBy` means "arrives before".
        ops = {"leaveAt": ">", "arriveBy": "<"}
        self.where = " AND ".join(f'"{k}" {ops.get(k, "=")} ?' for k in filters) or "1"
        self.params: list[Any] = list(filters.values())

    def _one(self, extra: str, extra_params: list[Any], order: str) -> dict[str, Any] | None:
        sql = f"SELECT record FROM {self.table} WHERE {self.where}{extra} ORDER BY rowid {order} LIMIT 1"
        row = self.conn.execute(sql, [*self.params, *extra_params]).fetchone()
        return json.loads(row[0]) if row else None

    def first(self) -> dict[str, Any] | None:
        return self._one("", [], "ASC")

    def last_with_id(self, key: str, value: Any) -> dict[str, Any] | None:
        """The last match whose unique id is the booked entity's."""
        if not isinstance(value, str):
            return None  # a malformed booked id (a coordinate pair) equals no record
        return self._one(f' AND "{key}" = ?', [value], "DESC")

    def last_decoy(self, goal: GoalCall) -> dict[str, Any] | None:
        """The last match that does not satisfy the goal's search parameters."""
        items = [(k, normalise(v)) for k, v in goal.parameters.items() if not is_empty(v)]
        if not items:
            return None
        if not all(isinstance(v, str) for _, v in items):
            raise sqlite3.DataError("non-string goal value")  # handled by the Python path
        satisfied = " AND ".join(f'COALESCE("n_{k}" = ?, 0)' for k, _ in items)
        return self._one(f" AND NOT ({satisfied})", [v for _, v in items], "DESC")


class _PythonQuery:
    """The same three questions as `_SqlQuery`, over a list of matches already filtered in Python."""

    def __init__(self, matches: list[dict[str, Any]]):
        self.matches = matches

    def first(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.matches[0]) if self.matches else None

    def last_with_id(self, key: str, value: Any) -> dict[str, Any] | None:
        found = [r for r in self.matches if r.get(key) == value]
        return copy.deepcopy(found[-1]) if found else None

    def last_decoy(self, goal: GoalCall) -> dict[str, Any] | None:
        found = [r for r in self.matches if not is_subset(goal.parameters, r)]
        return copy.deepcopy(found[-1]) if found else None


_Query = _SqlQuery | _PythonQuery
