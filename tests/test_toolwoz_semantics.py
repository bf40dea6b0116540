"""ToolWOZ semantics on the real data: results, rewards, score, isolation and hostile input."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from josh.envs.toolwoz import ToolWOZEnvironment, paths
from josh.envs.toolwoz.data_model import is_subset, normalise
from josh.envs.toolwoz.store import cache_is_valid
from josh.envs.toolwoz.tools import (
    INVALID_API_CALL,
    INVALID_ARGUMENTS,
    INVALID_VALUE,
    INVALID_VALUE_TYPE,
    _SqlQuery,
    select,
)
from josh.errors import JoshError, UnknownTaskError
from josh.types import bounded, dumps_line


def test_is_subset_follows_the_reference() -> None:
    assert is_subset({"area": "north", "name": ""}, {"area": "North"})
    assert is_subset({"name": "Rosa's"}, {"name": "rosas"})
    assert not is_subset({"area": "north"}, {"area": "dontcare"})
    assert is_subset({"area": "dontcare"}, {})
    # emptiness is judged before lower-casing, as the reference does
    assert not is_subset({"area": "Dontcare"}, {})
    # ... in `main` too: its "dontcare" is dropped before comparing, so "Dontcare" finds nothing to equal
    assert not is_subset({"area": "Dontcare"}, {"area": "dontcare"})
    assert not is_subset({"stars": "4"}, {"stars": 4})
    assert normalise("King's College") == "kings college"
    assert normalise(4) == 4


pytestmark_data = pytest.mark.data


@pytest.mark.data
def test_splits_and_counts(toolwoz_env: ToolWOZEnvironment) -> None:
    sizes = {s: len(toolwoz_env.task_ids(s)) for s in ("test", "full_test", "val", "train", "all")}
    assert sizes == {"test": 450, "full_test": 805, "val": 793, "train": 6251, "all": 7849}
    assert set(toolwoz_env.task_ids("test")) <= set(toolwoz_env.task_ids("full_test"))
    assert toolwoz_env.task_ids("test") == sorted(toolwoz_env.task_ids("test"))
    with pytest.raises(JoshError, match="unknown split"):
        toolwoz_env.task_ids("dev")


@pytest.mark.data
def test_task_contents(toolwoz_env: ToolWOZEnvironment) -> None:
    task = toolwoz_env.task("MUL0003.json")
    assert task.task_id == "MUL0003" and task.split == "test"
    assert [g.name for g in task.goal_calls] == [
        "search_hotel",
        "book_hotel",
        "search_restaurant",
        "book_restaurant",
    ]
    assert task.goal_calls[1].returns == {"name": "alexander bed and breakfast", "reference": "JXVKZ7KV"}
    assert task.goal_calls[3].unique_id == "ask"
    assert "<span class='emphasis'>" in task.goal_messages[1]
    assert task.turns[0].role == "user" and task.turns[1].role == "assistant"
    assert task.requested == {} or all(isinstance(v, list) for v in task.requested.values())
    with pytest.raises(UnknownTaskError, match="unknown ToolWOZ task"):
        toolwoz_env.task("NOPE123")


@pytest.mark.data
def test_search_selection_rules(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    # call is a subset of the goal: the last match that does not satisfy the goal (a decoy)
    assert s.call("search_hotel", {"type": "guesthouse"})[0]["name"] == "warkworth house"
    # goal is a subset of the call and the goal books: the booked entity
    hit = s.call(
        "search_hotel", {"type": "guesthouse", "parking": "yes", "pricerange": "cheap", "internet": "yes"}
    )
    assert [r["name"] for r in hit] == ["alexander bed and breakfast"]
    # "ask" is booked but the database calls it "ask restaurant": no booked match, no decoy -> []
    assert s.call("search_restaurant", {"food": "italian", "pricerange": "cheap", "area": "centre"}) == []
    # a domain outside the goal: the first match
    assert s.call("search_attraction", {"area": "centre"})[0]["area"] == "centre"
    # trains: leaveAt means strictly later, arriveBy strictly earlier
    trains = s.call("search_train", {"leaveAt": "23:50"})
    assert all(t["leaveAt"] > "23:50" for t in trains)
    assert s.call("search_train", {"departure": "atlantis"}) == []
    missing = s.call("search_restaurant", {"name": "pizza hut city centre"})[0]
    assert "signature" in missing and json.dumps(missing)  # full record, JSON-safe (no NaN)


@pytest.mark.data
def test_book_and_rewards(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    assert s.call("book_hotel", {"stay": "4", "day": "sunday", "people": "6"}) == {
        "success": False,
        "return": {},
    }
    booked = s.call(
        "book_hotel", {"stay": "4", "day": "Sunday", "people": "6", "name": "Alexander Bed and Breakfast"}
    )
    assert booked == {
        "success": True,
        "return": {"name": "alexander bed and breakfast", "reference": "JXVKZ7KV"},
    }
    assert [g.name for g in s.reward_events] == ["book_hotel"]
    assert s.calls[-1].rewards == ("book_hotel",)
    assert s.score() == 0.25
    assert s.call("book_restaurant", {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"})[
        "success"
    ]
    assert [g["name"] for g in s.reward_events] == ["book_hotel", "book_restaurant"]
    assert s.score() == 0.5
    assert s.call("book_attraction", {}) == {"success": False, "return": {}}


@pytest.mark.data
def test_results_never_alias_state(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    args = {"stay": "4", "day": "sunday", "people": "6", "name": "alexander bed and breakfast"}
    first = s.call("book_hotel", args)
    first["return"]["name"] = "tampered"
    args["name"] = "tampered"
    again = toolwoz_env.session("MUL0003").call("book_hotel", {**args, "name": "alexander bed and breakfast"})
    assert again["return"]["name"] == "alexander bed and breakfast"
    assert s.calls[0].arguments["name"] == "alexander bed and breakfast"
    tools = s.tools
    tools.clear()
    assert len(s.tools) == 8


@pytest.mark.data
def test_snapshot_restore_and_fork(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    snap = s.snapshot()
    s.call("book_restaurant", {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"})
    branch = s.fork()
    s.restore(snap)
    assert s.calls == [] and s.reward_events == [] and s.score() == 0.0
    assert branch.score() == 0.25 and len(branch.calls) == 1


HOSTILE = [
    ("search_hotel", {"name": "x' OR '1'='1"}),
    ("search_hotel", {"name": "'; DROP TABLE db_hotel; --"}),
    ("search_hotel", {"name": "a" * 1_000_000}),
    ("search_hotel", {"stars": 4, "area": None, "parking": True, "internet": 1e308}),
    ("search_hotel", {"area": {"nested": {"json": [1, 2]}}}),
    ("search_hotel", {"area": "\ud800 lone surrogate"}),
    ("search_train", {"leaveAt": "\ud800"}),
    ("search_hotel", {"name": "\u202e\u0000 \U0001f600 caf\u00e9"}),
    ("search_hotel", '{"area": "north"'),
    ("search_hotel", [1, 2]),
    ("search_hotel", 42),
    ("drop_tables", {}),
    (None, {}),
    (["search_hotel"], {}),
    ("search_taxi", {}),
    ("search_hospital", {"department": "neurology"}),
    ("book_taxi", {}),
]


@pytest.mark.data
@pytest.mark.parametrize(("name", "arguments"), HOSTILE)
def test_hostile_arguments_never_raise(toolwoz_env: ToolWOZEnvironment, name, arguments) -> None:
    s = toolwoz_env.session("MUL0003")
    result = s.call(name, arguments)
    assert isinstance(result, (list, dict, str))
    json.dumps(result)
    assert s.score() == 0.0


@pytest.mark.data
def test_error_results_are_the_references(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    assert s.call("search_hotel", {"colour": "red"}) == INVALID_API_CALL
    assert s.call("search_police", {}) == INVALID_API_CALL
    assert s.call("search_hotel", {"area": ["north"]}) == INVALID_VALUE
    assert s.call("search_hotel", "not json") == INVALID_ARGUMENTS
    assert s.call("search_hotel", '{"area": "north"}')[0]["area"] == "north"  # JSON strings are accepted


@pytest.mark.data
def test_sql_and_python_paths_agree(toolwoz_env: ToolWOZEnvironment) -> None:
    """The SQLite fast path and the pure-Python fallback pick the same records, named here by hand.

    The SQL path is queried directly: through `execute`, an error in its SQL would fall back to the
    Python path unseen."""
    executor = toolwoz_env.executor
    task = toolwoz_env.task("MUL0003")
    conn = executor.store.connection()
    cases = [
        # a subset of the hotel goal: the last guesthouse that does not satisfy it (the decoy)
        ("hotel", {"type": "guesthouse"}, "warkworth house"),
        # the whole goal: the booked hotel
        ("hotel", {"type": "guesthouse", "parking": "yes", "pricerange": "cheap", "internet": "yes"},
         "alexander bed and breakfast"),
        # the whole restaurant goal: "ask" is booked but the database calls it "ask restaurant": nothing
        ("restaurant", {"food": "italian", "pricerange": "cheap", "area": "centre"}, None),
        # a subset of the restaurant goal: the last centre restaurant that is not cheap and italian
        ("restaurant", {"area": "centre"}, "bangkok city"),
        # trains are not in the goal: the first match; leaveAt means after, arriveBy before (as text)
        ("train", {"leaveAt": "23:50"}, "TR5431"),
        ("train", {"arriveBy": "05:10"}, "TR5431"),
        ("train", {"leaveAt": "10:00", "day": "monday"}, "TR1111"),
        ("attraction", {"area": "centre"}, "adc theatre"),
    ]  # fmt: skip
    for domain, args, expected in cases:
        fast = select(_SqlQuery(conn, domain, args), task, domain, args)
        slow = select(executor.python_query(domain, args), task, domain, args)
        assert fast == slow, (domain, args)
        assert [r.get("name") or r.get("trainID") for r in fast] == ([expected] if expected else []), args
        assert executor.execute(task, f"search_{domain}", args) == fast
    assert select(_SqlQuery(conn, "train", {"leaveAt": "23:50"}), task, "train", {})[0]["leaveAt"] == "23:59"


# -- Python objects no JSON parser makes: the session still answers, and stays usable -----------------------


class _Hostile:
    """Every dunder a caller could trip over raises."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("__ne__")

    def __hash__(self) -> int:
        raise RuntimeError("__hash__")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__")

    def __str__(self) -> str:
        raise RuntimeError("__str__")

    def __deepcopy__(self, memo: Any) -> Any:
        raise RuntimeError("__deepcopy__")

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() asks for it
        raise RuntimeError("__class__")


class _HashableHostile(_Hostile):
    def __hash__(self) -> int:  # can be a dict key, but comparing or printing it raises
        return 7


class _EvilStr(str):
    def __eq__(self, other: object) -> bool:  # a dict lookup of an equal hash asks for it
        raise RuntimeError("__eq__")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("__ne__")

    __hash__ = str.__hash__

    def lower(self) -> str:
        raise RuntimeError("lower")


class _EvilInt(int):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__")

    __hash__ = int.__hash__


def _nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"area": value}
    return value


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _generator() -> Any:
    yield "north"


# (label, name, arguments, the result worked out from the executor's rules)
ODD_CALLS: list[tuple[str, Any, Any, Any]] = [
    ("list 1000 deep as arguments", "search_hotel", _nested(1000), INVALID_ARGUMENTS),
    ("list 1000 deep as a value", "search_hotel", {"area": _nested(1000)}, INVALID_VALUE),
    ("dict 1000 deep", "search_hotel", _nested_dict(1000), INVALID_VALUE),
    ("list 1000 deep as the name", _nested(1000), {}, INVALID_API_CALL),
    ("JSON text 100,000 deep", "search_hotel", "[" * 100_000 + "]" * 100_000, INVALID_ARGUMENTS),
    ("a cycle as arguments", "search_hotel", _cycle(), INVALID_ARGUMENTS),
    ("a lock as arguments", "search_hotel", threading.Lock(), INVALID_ARGUMENTS),
    ("a lock as a value", "search_hotel", {"area": threading.Lock()}, INVALID_VALUE_TYPE),
    ("a generator as a value", "search_hotel", {"area": _generator()}, INVALID_VALUE_TYPE),
    ("a generator as arguments", "search_hotel", _generator(), INVALID_ARGUMENTS),
    ("hostile name", _Hostile(), {}, INVALID_API_CALL),
    ("hostile arguments", "search_hotel", _Hostile(), INVALID_ARGUMENTS),
    ("hostile value", "search_hotel", {"area": _Hostile()}, INVALID_VALUE_TYPE),
    ("hostile key", "search_hotel", {_HashableHostile(): "north"}, INVALID_API_CALL),
    ("5,000-digit integer text", "search_hotel", "9" * 5000, INVALID_ARGUMENTS),
    ("5,000-digit integer in JSON", "search_hotel", '{"stars": ' + "9" * 5000 + "}", INVALID_ARGUMENTS),
    ("5,000-digit Python integer", "search_hotel", {"stars": 10**5000}, None),
    ("integer key", "search_hotel", {1: "north"}, INVALID_API_CALL),
    ("None key", "search_hotel", {None: "north"}, INVALID_API_CALL),
    ("tuple key", "search_hotel", {("area",): "north"}, INVALID_API_CALL),
    ("bytes as arguments", "search_hotel", b'{"area": "north"}', INVALID_ARGUMENTS),
    ("bytes as a value", "search_hotel", {"area": b"north"}, INVALID_VALUE_TYPE),
    ("bytes as the name", b"search_hotel", {}, INVALID_API_CALL),
    ("a set as a value", "search_hotel", {"area": {"north"}}, INVALID_VALUE_TYPE),
    ("a tuple as a value", "search_hotel", {"area": ("north",)}, INVALID_VALUE_TYPE),
]


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "arguments", "expected"), [c[1:] for c in ODD_CALLS], ids=[c[0] for c in ODD_CALLS]
)
def test_odd_python_objects_never_raise(toolwoz_env: ToolWOZEnvironment, name, arguments, expected) -> None:
    s = toolwoz_env.session("MUL0003")
    result = s.call(name, arguments)
    if expected is not None:
        assert result == expected
    else:
        # A number is ignored by the search's filter, as the reference ignores non-strings: every hotel
        # matches. {"stars": ...} is not a subset of MUL0003's hotel goal (no stars there) nor the goal of
        # it, so the rule "first match" gives hotel id 0 of the database, a and b guest house.
        assert [(r["id"], r["name"]) for r in result] == [("0", "a and b guest house")]
    json.dumps(result)
    # Whatever came in, the session stays usable and everything it recorded is JSON.
    assert s.score() == 0.0 and s.met_goals() == [] and len(s.failed_goals()) == 4
    assert len(s.calls) == 1
    line = json.dumps([c.to_dict() for c in s.calls], ensure_ascii=False, allow_nan=False)
    line.encode("utf-8")
    snap = s.snapshot()
    branch = s.fork()
    assert branch.snapshot() == snap and s.snapshot() == snap
    assert branch.call("book_restaurant", {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"})
    assert branch.score() == 0.25 and s.score() == 0.0


@pytest.mark.data
def test_str_and_int_subclasses_act_as_their_values(toolwoz_env: ToolWOZEnvironment) -> None:
    """A str or int subclass whose methods raise is read as the plain value it holds."""
    plain = toolwoz_env.session("MUL0003")
    odd = toolwoz_env.session("MUL0003")
    booking = {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"}
    # {"type": "guesthouse"} is a subset of MUL0003's hotel goal: the last guesthouse that is not the
    # goal's (the decoy), warkworth house, as in test_search_selection_rules.
    decoy = odd.call(_EvilStr("search_hotel"), {_EvilStr("type"): _EvilStr("guesthouse")})
    assert [r["name"] for r in decoy] == ["warkworth house"]
    assert decoy == plain.call("search_hotel", {"type": "guesthouse"})
    # The goal's own booking: success, with the return the task's data gives for "ask".
    booked = odd.call("book_restaurant", {k: _EvilStr(v) for k, v in booking.items()})
    assert booked == {"success": True, "return": {"name": "ask", "reference": "Y2Y8QYBY"}}
    assert booked == plain.call("book_restaurant", booking)
    # A number is ignored by the filter: the first hotel of the database (see test_odd_python_objects...).
    assert [r["name"] for r in odd.call("search_hotel", {"stars": _EvilInt(4)})] == ["a and b guest house"]
    assert [r["name"] for r in plain.call("search_hotel", {"stars": 4})] == ["a and b guest house"]
    # JSON text arguments; "area" is not in the goal, so the first hotel in the north: acorn guest house.
    north = odd.call(_EvilStr("search_hotel"), _EvilStr('{"area": "north"}'))
    assert [(r["name"], r["area"]) for r in north] == [("acorn guest house", "north")]
    assert north == plain.call("search_hotel", '{"area": "north"}')
    assert odd.score() == plain.score() == 0.25
    assert [g.name for g in odd.reward_events] == ["book_restaurant"]
    assert [c.to_dict() for c in odd.calls] == [c.to_dict() for c in plain.calls]
    assert all(type(c.name) is str for c in odd.calls)


@pytest.mark.data
def test_recorded_arguments_are_json_safe(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    s.call("search_hotel", {"area": "\ud800", "name": _nested(100)})
    s.call("search_hotel", {"stars": 10**5000})
    recorded = json.dumps([c.to_dict() for c in s.calls], ensure_ascii=False)
    recorded.encode("utf-8")  # no lone surrogate left
    assert s.calls[0].arguments["area"] == "\ufffd"
    assert "nested deeper than" in recorded
    assert isinstance(s.calls[1].arguments["stars"], str)  # too long to write as a JSON number


@pytest.mark.data
@pytest.mark.parametrize("task_id", ["\ud800", _EvilStr("MUL0003"), "MUL0003\x00", "x" * 100_000])
def test_odd_task_ids_are_unknown_tasks_or_found(toolwoz_env: ToolWOZEnvironment, task_id) -> None:
    try:
        task = toolwoz_env.task(task_id)
    except UnknownTaskError as exc:
        assert "unknown ToolWOZ task" in str(exc)
    else:
        assert task.task_id == "MUL0003"


def test_bounded_and_dumps_line_make_any_value_json() -> None:
    """The JSON-safety helpers the session records with: plain values out, whatever went in."""
    value = {
        "big": 10**5000,
        "text": _EvilStr("caf\ud800"),
        "number": _EvilInt(3),
        _HashableHostile(): _Hostile(),
        "deep": _nested(100),
    }
    out = bounded(value)
    assert out["big"] == "<int of 16,610 bits>"  # 5,000 * log2(10) = 16,609.6
    assert type(out["text"]) is str and out["text"] == "caf\ufffd"
    assert type(out["number"]) is int and out["number"] == 3
    assert out["<_HashableHostile>"] == "<_Hostile>"
    json.dumps(out, ensure_ascii=False).encode("utf-8")

    class _BadStr:
        def __str__(self) -> str:
            raise RuntimeError("__str__")

    assert json.loads(dumps_line({"a": 10**5000, "b": _BadStr()}))["a"] == "<int of 16,610 bits>"


@pytest.mark.data
def test_search_goals_are_met_by_the_references_rules(toolwoz_env: ToolWOZEnvironment) -> None:
    hotel_goal = {"type": "guesthouse", "parking": "yes", "pricerange": "cheap", "internet": "yes"}
    s = toolwoz_env.session("MUL0003")  # its hotel search books "alexander bed and breakfast"
    # a subset of the goal returns the decoy, not the booked hotel: not met
    assert [r["name"] for r in s.call("search_hotel", {"type": "guesthouse"})] == ["warkworth house"]
    # the goal plus area north: no cheap guesthouse with parking in the north is the booked one -> []
    assert s.call("search_hotel", {**hotel_goal, "area": "north"}) == []
    # the goal itself returns the booked hotel: met
    assert [r["name"] for r in s.call("search_hotel", hotel_goal)] == ["alexander bed and breakfast"]
    assert [c.rewards for c in s.calls] == [(), (), ("search_hotel",)]
    assert s.score() == 0.25 and [g.name for g in s.failed_goals()] == [
        "book_hotel", "search_restaurant", "book_restaurant"
    ]  # fmt: skip
    # MUL0409 searches an attraction it does not book; its goal is {"name": "regency gallery"} (the empty
    # type and area are ignored).
    t = toolwoz_env.session("MUL0409")
    assert [r["name"] for r in t.call("search_attraction", {"area": "centre"})] == ["adc theatre"]  # first
    assert [r["name"] for r in t.call("search_attraction", {})] == ["williams art and antiques"]  # decoy
    found = t.call("search_attraction", {"name": "regency gallery", "area": "centre"})
    assert [r["name"] for r in found] == ["regency gallery"]  # holds the goal, no booking to match: met
    assert [c.rewards for c in t.calls] == [(), (), ("search_attraction",)]
    assert t.score() == pytest.approx(1 / 3)
    # Recorded calls as written to a run file.
    assert t.calls[0].to_dict() == {"name": "search_attraction", "arguments": {"area": "centre"},
                                    "result": t.calls[0].result, "rewards": []}  # fmt: skip
    assert t.calls[2].to_dict()["rewards"] == ["search_attraction"]


@pytest.mark.data
def test_the_python_search_path_by_hand(toolwoz_env: ToolWOZEnvironment) -> None:
    def names(domain: str, filters: dict[str, str]) -> list[str]:
        return [
            r.get("name") or r["trainID"] for r in toolwoz_env.executor.python_query(domain, filters).matches
        ]

    # "dontcare" filters nothing: the database's 33 hotels, from hotel id 0 (a and b guest house) on
    everything = names("hotel", {"area": "dontcare"})
    assert len(everything) == 33 and everything[0] == "a and b guest house"
    # ... and the filters after it still apply
    assert names("hotel", {"area": "dontcare", "name": "acorn guest house"}) == ["acorn guest house"]
    # strictly after the last departure (23:59) and strictly before the first arrival (01:06): nothing
    assert names("train", {"leaveAt": "23:59"}) == [] and names("train", {"arriveBy": "01:06"}) == []
    assert "TR5431" in names("train", {"leaveAt": "23:58"})  # leaves at 23:59


@pytest.mark.data
def test_task_lookups_and_their_errors(toolwoz_env: ToolWOZEnvironment) -> None:
    assert toolwoz_env.task_ids() == toolwoz_env.task_ids("all") and len(toolwoz_env.task_ids()) == 7849
    assert next(iter(toolwoz_env.tasks())).task_id == toolwoz_env.task_ids()[0]
    with pytest.raises(JoshError) as info:
        toolwoz_env.task_ids("dev")
    assert str(info.value) == "unknown split 'dev'; choose one of test, full_test, val, train, paper_train, all"
    with pytest.raises(UnknownTaskError) as info:
        toolwoz_env.task(123)  # type: ignore[arg-type]
    assert str(info.value) == "task id must be a string, got int"
    with pytest.raises(UnknownTaskError) as info:
        toolwoz_env.task("x" * 100)
    # the id shown cut short: reprlib keeps 30 characters of its quoted repr ("'" + 12 x, "...", 13 x + "'")
    assert str(info.value) == (
        "unknown ToolWOZ task 'xxxxxxxxxxxx...xxxxxxxxxxxxx'; `josh data tasks --split all` lists the 7,849 ids"
    )
    first = toolwoz_env.task("MUL0409")
    assert toolwoz_env.task("MUL0409.json") is first  # cached: the same object
    assert (first.split, type(first.requested), first.turns[0].role) == ("test", dict, "user")
    assert first.turns[0].text and all(t.role in ("user", "assistant") for t in first.turns)


@pytest.mark.data
def test_nested_parts_of_results_are_copies_too(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    failed = s.call("book_hotel", {"stay": "1"})
    failed["return"]["tampered"] = True  # the failed-booking result's nested object
    assert s.call("book_hotel", {"stay": "1"}) == {"success": False, "return": {}}
    booked = s.call(
        "book_hotel", {"stay": "4", "day": "sunday", "people": "6", "name": "alexander bed and breakfast"}
    )
    booked["return"]["name"] = "tampered"
    assert s.calls[-1].result["return"]["name"] == "alexander bed and breakfast"  # the record kept its own
    query = toolwoz_env.executor.python_query("hotel", {"type": "guesthouse"})
    goal = toolwoz_env.task("MUL0003").goal("search_hotel")
    for found in (query.first(), query.last_with_id("name", "warkworth house"), query.last_decoy(goal)):
        found["price"]["single"] = "0"  # a nested object of the stored record
    assert [r["price"]["single"] for r in (query.first(), query.last_decoy(goal))] == ["50", "55"]
    assert query.last_with_id("name", "warkworth house")["price"]["single"] == "55"


@pytest.mark.data
def test_goal_calls_met_only_by_the_right_call(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0003")
    # Part of the hotel goal: every cheap guesthouse has parking and internet (no decoy), so the booked
    # hotel comes back and the search goal is met.
    assert [r["name"] for r in s.call("search_hotel", {"pricerange": "cheap", "type": "guesthouse"})] == [
        "alexander bed and breakfast"
    ]
    assert s.calls[-1].rewards == ("search_hotel",)
    # No arguments at all: an empty search (a subset of the goal), answered with the decoy.
    assert [r["name"] for r in s.call("search_hotel")] == ["warkworth house"] and s.calls[-1].arguments == {}
    assert len(s.fork().tools) == 8  # a fork has the tools too
    t = toolwoz_env.session("MUL0409")  # searches "regency gallery", books no attraction
    # the goal's name with an invalid value: an error result, which meets nothing
    assert t.call("search_attraction", {"name": "regency gallery", "area": ["centre"]}) == INVALID_VALUE
    # another tool with the goal's arguments (a failed hotel booking): meets nothing either
    assert t.call("book_hotel", {"name": "regency gallery"}) == {"success": False, "return": {}}
    assert [c.rewards for c in t.calls] == [(), ()] and t.score() == 0.0


@pytest.mark.data
def test_task_fields_as_stored(toolwoz_env: ToolWOZEnvironment) -> None:
    task = toolwoz_env.task("MUL0002")
    assert task.requested == {"restaurant": ["food"], "hotel": ["area", "internet", "stars"]}
    # its first goal call, as `josh data tasks` prints it: only the non-empty arguments
    assert task.goal_calls[0].to_dict() == {
        "name": "search_hotel",
        "arguments": {"name": "bridge guest house"},
    }


def test_cache_paths_and_the_validity_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOSH_CACHE", raising=False)
    assert paths.cache_root() == Path(platformdirs.user_cache_dir("josh", appauthor=False))
    monkeypatch.setenv("JOSH_CACHE", str(tmp_path))
    folder = tmp_path / "toolwoz-0.1.4"
    assert paths.database_path() == folder / "toolwoz-v1.sqlite"
    assert paths.digest_path() == folder / "toolwoz-v1.sqlite.sha256"
    assert not cache_is_valid()  # nothing built
    folder.mkdir()
    paths.database_path().write_bytes(b"abc")
    assert not cache_is_valid()  # no digest
    # sha256("abc"), the FIPS 180-2 test vector
    paths.digest_path().write_text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n")
    assert cache_is_valid() and cache_is_valid(paths.database_path())
    paths.database_path().write_bytes(b"abd")  # one byte changed
    assert not cache_is_valid()
    paths.database_path().unlink()
    assert not cache_is_valid()  # a digest alone


@pytest.mark.data
def test_a_dontcare_value_filters_nothing(toolwoz_env: ToolWOZEnvironment) -> None:
    s = toolwoz_env.session("MUL0409")  # no hotel in its goal: a search answers with the first match
    # "dontcare" and "" are empty values: no filter, so the first hotel of the database
    assert [r["name"] for r in s.call("search_hotel", {"area": "dontcare"})] == ["a and b guest house"]
    assert [r["name"] for r in s.call("search_hotel", {"area": ""})] == ["a and b guest house"]


@pytest.mark.data
def test_a_partial_search_without_a_decoy_returns_the_booked_entity(toolwoz_env: ToolWOZEnvironment) -> None:
    # MUL0025 books lovell lodge; its hotel goal is north, 2 stars, moderate, internet. The 2-star hotels
    # in the north are ashley hotel and lovell lodge, both moderate with internet: no decoy, so the search
    # answers with the booked one (not the first match), and meets the search goal.
    s = toolwoz_env.session("MUL0025")
    assert [r["name"] for r in s.call("search_hotel", {"area": "north", "stars": "2"})] == ["lovell lodge"]
    assert s.calls[-1].rewards == ("search_hotel",)


@pytest.mark.data
def test_a_partial_search_meets_a_goal_without_a_booking_when_its_answer_holds_the_goal(
    toolwoz_env: ToolWOZEnvironment,
) -> None:
    # MUL0004 searches a guesthouse with parking, internet and 0 stars, and books no hotel. Every 0-star
    # hotel with parking is such a guesthouse (no decoy): the answer holds the whole goal, so it is met.
    s = toolwoz_env.session("MUL0004")
    found = s.call("search_hotel", {"parking": "yes", "stars": "0"})
    assert [r["name"] for r in found] == ["city centre north b and b"]
    assert (found[0]["type"], found[0]["internet"]) == ("guesthouse", "yes")
    assert s.calls[-1].rewards == ("search_hotel",)


class _EvilFloat(float):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__")

    __hash__ = float.__hash__


@pytest.mark.data
def test_a_float_subclass_acts_as_its_value(toolwoz_env: ToolWOZEnvironment) -> None:
    # a number is ignored by the search filter: the first hotel, as for {"stars": 4} (see above)
    found = toolwoz_env.session("MUL0003").call("search_hotel", {"stars": _EvilFloat(4.0)})
    assert [r["name"] for r in found] == ["a and b guest house"]


def test_turn_crediting_judges_a_turn_against_the_goals_pending_when_it_began(
    toolwoz_env: ToolWOZEnvironment,
) -> None:
    """MUL0225's booked train is not what its goal search returns. Booking it, then searching, in one turn:
    `call` crediting (evaluation) drops the booking goal at once and credits the search; `turn` crediting
    (the paper's search, josh's harvest default) still checks the search against the booked train, so only
    the booking is credited; the booking leaves the pending set when the turn ends, forks included."""
    task = toolwoz_env.task("MUL0225")
    goals = {g.name: g for g in task.goal_calls}
    turn = [("book_train", goals["book_train"].arguments), ("search_train", goals["search_train"].arguments)]
    by_call = toolwoz_env.session("MUL0225")
    by_turn = toolwoz_env.session("MUL0225", crediting="turn")
    for name, arguments in turn:
        by_call.call(name, arguments)
        by_turn.call(name, arguments)
    assert [g.name for g in by_call.reward_events] == ["book_train", "search_train"]
    assert [g.name for g in by_turn.reward_events] == ["book_train"]
    assert [c.rewards for c in by_turn.calls] == [("book_train",), ()]
    assert "book_train" in [g.name for g in by_turn.pending]  # the turn is still open
    fork = by_turn.fork()
    fork.call("book_train", goals["book_train"].arguments)  # the open turn credited it already
    assert [g.name for g in fork.reward_events] == ["book_train"]
    fork.say("assistant", "booked")
    assert "book_train" not in [g.name for g in fork.pending]
    assert "book_train" in [g.name for g in by_turn.pending]  # forks are independent
    fork.call("search_train", goals["search_train"].arguments)  # a new turn: no booking goal in play now
    assert [g.name for g in fork.reward_events] == ["book_train", "search_train"]
    assert by_turn.score() == by_call.score()  # the score does not depend on crediting
    with pytest.raises(JoshError, match="unknown crediting"):
        toolwoz_env.session("MUL0225", crediting="step")  # type: ignore[arg-type]


def test_harvests_credit_by_turn_and_evaluations_by_call(toolwoz_env: ToolWOZEnvironment) -> None:
    from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig, ToolWOZHarvestConfig
    from josh.benchmarks.toolwoz.prompts import toolwoz_prompts
    from josh.benchmarks.toolwoz.setups import ToolWOZSetups

    prompts = toolwoz_prompts("josh")
    harvest = ToolWOZHarvestConfig.model_validate({"model": "scripted", "user": "replay"})
    assert harvest.crediting == "turn"
    for cfg, crediting, want in [
        (harvest, harvest.crediting, "turn"),
        (ToolWOZHarvestConfig.model_validate({"model": "scripted", "user": "replay", "crediting": "call"}), "call", "call"),
        (ToolWOZEvalConfig.model_validate({"model": "scripted", "user": "replay"}), "call", "call"),
    ]:
        setups = ToolWOZSetups(cfg, toolwoz_env, prompts, crediting)
        assert setups.setup("MUL0225", 0, None).session.crediting == want
