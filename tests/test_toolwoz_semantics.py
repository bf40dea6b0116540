"""ToolWOZ semantics on the real data: results, rewards, score, isolation and hostile input."""

from __future__ import annotations

import json

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment
from josh.envs.toolwoz.data_model import is_subset, normalise
from josh.envs.toolwoz.tools import INVALID_API_CALL, INVALID_ARGUMENTS, INVALID_VALUE, select
from josh.errors import JoshError, UnknownTaskError


def test_is_subset_follows_the_reference() -> None:
    assert is_subset({"area": "north", "name": ""}, {"area": "North"})
    assert is_subset({"name": "Rosa's"}, {"name": "rosas"})
    assert not is_subset({"area": "north"}, {"area": "dontcare"})
    assert is_subset({"area": "dontcare"}, {})
    # emptiness is judged before lower-casing, as the reference does
    assert not is_subset({"area": "Dontcare"}, {})
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
    """The SQLite fast path and the pure-Python fallback pick the same records."""
    executor = toolwoz_env.executor
    task = toolwoz_env.task("MUL0003")
    cases = [
        ("hotel", {"type": "guesthouse"}),
        ("hotel", {"type": "guesthouse", "parking": "yes", "pricerange": "cheap", "internet": "yes"}),
        ("restaurant", {"food": "italian", "pricerange": "cheap", "area": "centre"}),
        ("restaurant", {"area": "centre"}),
        ("train", {"leaveAt": "10:00", "day": "monday"}),
    ]
    for domain, args in cases:
        fast = executor.execute(task, f"search_{domain}", args)
        slow = select(executor.python_query(domain, args), task, domain, args)
        assert fast == slow, (domain, args)
