"""Build ToolWOZ tasks from the MultiWOZ dialogues, exactly as the reference's `create_apis` does.

A task exists for every dialogue whose goal has no taxi, police or hospital part (7,849 of 10,438).
Per goal domain: a `search_<domain>` goal call when the goal has `info`, and a `book_<domain>` call when
it has `book` and the dialogue's final system metadata lists a booked entity (the last one is the goal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from josh.envs.toolwoz.data_model import DOMAINS, GoalCall, Task, Turn, is_empty, unique_id_key

EXCLUDED_DOMAINS = ("taxi", "police", "hospital")
TEST_SIZE = 450


def is_eligible(dialogue: Mapping[str, Any]) -> bool:
    goal = dialogue["goal"]
    return not any(goal.get(domain) for domain in EXCLUDED_DOMAINS)


def _final_metadata(dialogue: Mapping[str, Any]) -> Mapping[str, Any]:
    log = dialogue["log"]
    # The reference reads the last turn's metadata, or the one before when the last is a user turn.
    return log[-1]["metadata"] or log[-2]["metadata"]


def reference_query(records: list[dict[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The reference's `queryDataBase` on raw goal values (apostrophes doubled, as its SQL-era code did)."""
    out = records
    for key, value in params.items():
        if not isinstance(value, str) or not value or is_empty(value):
            continue
        value = value.replace("'", "''")
        if key == "leaveAt":
            out = [r for r in out if isinstance(r.get(key), str) and r[key] > value]
        elif key == "arriveBy":
            out = [r for r in out if isinstance(r.get(key), str) and r[key] < value]
        else:
            out = [r for r in out if r.get(key) == value]
    return out


def _fill_missing(
    entity: dict[str, Any],
    domain: str,
    metadata: Mapping[str, Any],
    api_defs: Mapping[str, Any],
    search_params: Mapping[str, Any],
    records: list[dict[str, Any]],
) -> None:
    """Complete a booked entity as the reference does: from the belief state, else from the first search hit.

    The search hit is the reference's: the record's values zipped, in database column order, with the
    API's return names (so the names may not match the values; kept as the benchmark has it).
    """
    wanted = api_defs[domain][f"book_{domain}"]["returns"]
    semi = metadata[domain].get("semi", {})
    for key in [k for k in wanted if k not in entity]:
        if key in semi and not is_empty(semi[key]):
            entity[key] = semi[key]
        else:
            first = reference_query(records, search_params)[0]
            entity[key] = dict(
                zip(api_defs[domain][f"search_{domain}"]["returns"], first.values(), strict=False)
            )[key]


def goal_calls(
    dialogue: Mapping[str, Any], api_defs: Mapping[str, Any], records: Mapping[str, list[dict[str, Any]]]
) -> list[GoalCall]:
    """The goal API calls of one dialogue, in the reference's order (domain order, search before book).

    `records` holds each domain's database rows as the reference's DataFrame does (all columns, None for gaps).
    """
    goal = dialogue["goal"]
    calls: list[GoalCall] = []
    for domain in ("hotel", "attraction", "train", "restaurant"):
        domain_goal = goal.get(domain)
        if not domain_goal:
            continue
        info = domain_goal.get("info")
        search_params: dict[str, Any] = {}
        if info:
            search_params = {p: info.get(p, "") for p in api_defs[domain][f"search_{domain}"]["parameters"]}
            calls.append(GoalCall(name=f"search_{domain}", parameters=search_params))
        book = domain_goal.get("book")
        if book:
            metadata = _final_metadata(dialogue)
            booked = metadata[domain]["book"]["booked"]
            if booked:
                params = {p: book.get(p, "") for p in api_defs[domain][f"book_{domain}"]["parameters"]}
                entity = dict(booked[-1])
                _fill_missing(entity, domain, metadata, api_defs, search_params, records[domain])
                key = unique_id_key(domain)
                params[key] = entity[key]
                calls.append(
                    GoalCall(name=f"book_{domain}", parameters=params, returns=entity, unique_id=entity[key])
                )
    return calls


def _requested(goal: Mapping[str, Any]) -> dict[str, list[str]]:
    return {d: list(goal[d]["reqt"]) for d in DOMAINS if goal.get(d) and goal[d].get("reqt")}


def _turns(dialogue: Mapping[str, Any]) -> tuple[Turn, ...]:
    return tuple(Turn("assistant" if t["metadata"] else "user", t["text"]) for t in dialogue["log"])


def assign_splits(
    eligible_ids: Iterable[str], test_list: Iterable[str], val_list: Iterable[str]
) -> dict[str, str]:
    """Map each eligible dialogue id (with its `.json` suffix) to its base split.

    `test` holds the first 450 eligible test ids in sorted order; the other eligible test ids are
    `full_test` only (the `full_test` split is both); `val` the eligible val ids; `train` the rest.
    """
    eligible = set(eligible_ids)
    test_full = sorted(eligible.intersection(x.strip() for x in test_list))
    val = sorted(eligible.intersection(x.strip() for x in val_list))
    splits = dict.fromkeys(sorted(eligible), "train")
    for i, key in enumerate(test_full):
        splits[key] = "test" if i < TEST_SIZE else "full_test"
    for key in val:
        splits[key] = "val"
    return splits


def strip_suffix(dialogue_id: str) -> str:
    return dialogue_id[:-5] if dialogue_id.endswith(".json") else dialogue_id


def build_tasks(
    dialogues: Mapping[str, Mapping[str, Any]],
    api_defs: Mapping[str, Any],
    test_list: Iterable[str],
    val_list: Iterable[str],
    records: Mapping[str, list[dict[str, Any]]],
) -> list[Task]:
    """All ToolWOZ tasks, sorted by id, each with its base split."""
    eligible = [k for k, d in dialogues.items() if is_eligible(d)]
    splits = assign_splits(eligible, test_list, val_list)
    tasks = []
    for key in sorted(eligible):
        dialogue = dialogues[key]
        tasks.append(
            Task(
                task_id=strip_suffix(key),
                split=splits[key],
                goal_messages=tuple(dialogue["goal"]["message"]),
                goal_calls=tuple(goal_calls(dialogue, api_defs, records)),
                requested=_requested(dialogue["goal"]),
                turns=_turns(dialogue),
            )
        )
    return tasks
