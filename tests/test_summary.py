"""Every number of a run's summary on three records whose answers are worked out by hand in the comments."""

from __future__ import annotations

import pytest
from rich.console import Console

from josh.cli.render import summary_table
from josh.runner import summarize

TEXT_NOTE = "turn 0: tool call written as text: search_hotel (spoken to the customer, as the paper does)"

RECORDS = [
    {   # reward 0.5: 1 of its 3 goal calls failed (book_hotel)
        "task_id": "MUL1", "trial": 0, "status": "success", "termination": "user_ended", "reward": 0.5,
        "goal_calls": ["search_hotel", "book_hotel", "book_train"], "failed_goals": ["book_hotel"],
        "agent_usage": {"prompt_tokens": 100, "completion_tokens": 10, "cost": 0.01},
        "user_usage": {"prompt_tokens": 50, "completion_tokens": 5, "cost": 0.002},
        "agent_model_calls": 3, "user_model_calls": 2,
        "notes": [TEXT_NOTE, "turn 1: something else"],
        "model_calls": [
            "not a call",
            {"role": "judge", "cached": True},
            {"role": "agent", "cached": True}, {"role": "agent", "error": "timeout"},
            {"role": "user", "cached": True}, {"role": "user"}, "not a call", {"role": "judge", "cached": True},
        ],
    },
    {   # an error: reward 0 and every goal call failed
        "task_id": "MUL2", "trial": 0, "status": "error", "termination": "error", "reward": None,
        "goal_calls": ["search_train", "book_train"], "failed_goals": [],
        "error": "RetryableLLMError: gave up\nTraceback ...",
        "agent_usage": {"prompt_tokens": 30, "cost": 0.003}, "user_usage": {},
        "agent_model_calls": 1, "user_model_calls": 0,
        "notes": ["turn 2: tool call written as text: a, b (run as a tool call)"],
        "model_calls": [{"role": "agent", "error": "boom"}],
    },
    {   # no trial key (trial 0), no usage at all
        "task_id": "MUL3", "status": "success", "termination": "max_turns", "reward": 1.0,
        "goal_calls": ["search_restaurant"], "failed_goals": [],
    },
]  # fmt: skip


def test_every_number_of_the_summary_by_hand() -> None:
    s = summarize(RECORDS, wall_s=12.5)
    assert (s["tasks"], s["records"], s["scored"], s["errors"], s["trials"]) == (3, 3, 2, 1, 1)
    # rewards 0.5, 0 (error), 1.0: mean 0.5; scored only: (0.5 + 1) / 2; one perfect of three
    assert s["average_reward"] == pytest.approx(0.5) and s["average_reward_scored"] == pytest.approx(0.75)
    assert s["success_rate"] == pytest.approx(1 / 3) and s["perfect"] == 1
    assert s["pass_hat_k"] == pytest.approx({"1": 1 / 3})
    # per API: book_train is a goal of MUL1 (met) and MUL2 (failed: an error fails every goal)
    assert s["per_api"] == {
        "book_hotel": {"goal_calls": 1, "failed": 1, "failure_rate": 1.0},
        "book_train": {"goal_calls": 2, "failed": 1, "failure_rate": 0.5},
        "search_hotel": {"goal_calls": 1, "failed": 0, "failure_rate": 0.0},
        "search_restaurant": {"goal_calls": 1, "failed": 0, "failure_rate": 0.0},
        "search_train": {"goal_calls": 1, "failed": 1, "failure_rate": 1.0},
    }
    # per domain: hotel = MUL1 (2 goal calls, 1 met); train = MUL1 + MUL2 (3 goal calls, 1 met, rewards
    # 0.5 and 0 -> 0.25); restaurant = MUL3
    assert s["per_domain"] == {
        "hotel": {"goal_calls": 2, "met": 1, "tasks": 1, "average_reward": 0.5, "share_met": 0.5},
        "restaurant": {"goal_calls": 1, "met": 1, "tasks": 1, "average_reward": 1.0, "share_met": 1.0},
        "train": {"goal_calls": 3, "met": 1, "tasks": 2, "average_reward": 0.25, "share_met": 1 / 3},
    }
    assert list(s["per_domain"]) == ["hotel", "restaurant", "train"]
    assert s["terminations"] == {"user_ended": 1, "error": 1, "max_turns": 1}
    assert s["error_messages"] == {"RetryableLLMError: gave up": 1}  # the first line only
    # tokens: agent 100 + 30 prompt, 10 completion; user 50 and 5
    assert s["tokens"] == {
        "agent": {"prompt": 130, "completion": 10},
        "user": {"prompt": 50, "completion": 5},
    }
    assert s["cost_usd"] == pytest.approx({"agent": 0.013, "user": 0.002, "total": 0.015})
    assert s["model_calls"] == {"agent": 4, "user": 2}
    # the ledgers: cached agent 1, user 1; failed agent 2 (one in each record); "judge" and junk skipped
    assert s["cached_calls"] == {"agent": 1, "user": 1}
    assert s["failed_calls"] == {"agent": 2, "user": 0}
    assert s["text_tool_calls"] == 2 and s["text_tool_calls_spoken"] == 1  # MUL2's was run as a tool call
    assert s["wall_s"] == 12.5


def test_an_empty_run_is_all_zeros() -> None:
    s = summarize([])
    assert (s["tasks"], s["records"], s["trials"], s["pass_hat_k"]) == (0, 0, 0, {})
    assert (s["average_reward"], s["average_reward_scored"], s["success_rate"]) == (0.0, 0.0, 0.0)
    assert s["average_reward_ci95"] == [0.0, 0.0] and s["wall_s"] is None
    assert s["cached_calls"] == s["failed_calls"] == s["model_calls"] == {"agent": 0, "user": 0}


def test_error_messages_are_the_five_commonest_first_lines_cut_at_160() -> None:
    def error(task: str, message: str | None) -> dict:
        return {"task_id": task, "status": "error", "reward": None, "error": message}

    long = "L" * 200
    messages = [long, long, long, "E2", "E2", "E3", "E4", "E5", "E6", None]
    s = summarize([error(f"T{i}", m) for i, m in enumerate(messages)])
    # counts: L... 3, E2 2, then E3..E6 and "" (no message) 1 each; ties keep first-seen order: 5 kept
    assert s["error_messages"] == {"L" * 160: 3, "E2": 2, "E3": 1, "E4": 1, "E5": 1}


def test_a_record_that_does_not_say_its_model_calls_is_unpriced() -> None:
    # cost None with no agent_model_calls key: it may have made calls, so the run is "unpriced" (None)
    s = summarize([{"task_id": "T", "status": "success", "reward": 1.0, "agent_usage": {"cost": None}}])
    assert s["cost_usd"] == {"agent": None, "user": 0.0, "total": None}


def test_error_records_without_a_message_are_counted_not_a_crash() -> None:
    # A run file may hold a record with no status and no error (another tool's, or edited by hand):
    # it counts as an error with an empty first line. This raised IndexError ("".splitlines() is []).
    rows = [{"task_id": "A"}, {"task_id": "B", "status": "error", "error": ""}, {"task_id": "C", "error": 42}]
    s = summarize(rows)
    assert s["errors"] == 3 and s["error_messages"] == {"": 2, "42": 1}


def test_odd_records_count_as_the_paper_counts_them() -> None:
    rows = [
        {"task_id": "A", "status": "error", "reward": 0.5, "goal_calls": ["search_hotel", "search_hotel"]},
        {"task_id": "B", "status": "success", "reward": 1.0, "goal_calls": ["search_hotel", "search_hotel"],
         "failed_goals": ["search_hotel"]},
        {"task_id": "C", "status": "success", "reward": 1.0, "goal_calls": ["lookup", "get_train_times"]},
        {"task_id": "D", "reward": 1.0},  # no trial (trial 0), no status, no termination
        {"task_id": "D", "trial": 1, "status": "success", "reward": 1.0, "termination": "user_ended"},
    ]  # fmt: skip
    s = summarize(rows)
    # an error scores 0 even with a reward in it, and is not "scored"; D without status is an error too:
    # scored B, C and D trial 1
    assert s["records"] == 5 and s["scored"] == 3 and s["errors"] == 2
    assert s["average_reward"] == pytest.approx((0 + 1 + 1 + 0 + 1) / 5)
    # A (an error) fails both its search_hotel goals; B fails one of its two
    assert s["per_api"]["search_hotel"] == {"goal_calls": 4, "failed": 3, "failure_rate": 0.75}
    # a domain is what follows the first "_"; a name without one is its own domain
    assert set(s["per_domain"]) == {"hotel", "lookup", "train_times"}
    assert s["per_domain"]["train_times"] == {
        "goal_calls": 1, "met": 1, "tasks": 1, "average_reward": 1.0, "share_met": 1.0
    }  # fmt: skip
    # only D trial 1 says how it ended
    assert s["terminations"] == {"?": 4, "user_ended": 1} and s["trials"] == 2


def test_resampling_is_seeded_the_same_every_time() -> None:
    values = [(i * 0.618034) % 1 for i in range(1, 40)]  # 39 distinct rewards: the percentiles vary by seed
    rows = [{"task_id": f"T{i}", "status": "success", "reward": v} for i, v in enumerate(values)]
    assert summarize(rows)["average_reward_ci95"] == summarize(rows)["average_reward_ci95"]


def test_a_trees_summary_reads_the_golden_path_and_the_ledger() -> None:
    tree = {
        "task_id": "T", "status": "success", "reward": 0.5, "ended": "max_steps",
        "goal_calls": ["search_hotel", "book_hotel"], "golden_reward_events": ["search_hotel"],
        "reward_events": ["search_hotel", "book_hotel"],  # met on a pruned branch too: not credited
        "model_calls": [{"role": "agent", "n": 2}, {"role": "agent", "error": "down"}, {"role": "user"}],
        "nodes": [
            {"id": 0, "parent": None, "golden": True, "successful": False},
            {"id": 1, "parent": 0, "golden": True, "successful": True},
            {"id": 2, "parent": 0, "golden": False, "successful": False},
        ],
    }  # fmt: skip
    s = summarize([tree])
    # the golden path credited search_hotel only: book_hotel failed although a pruned branch met it
    assert s["per_api"]["book_hotel"]["failed"] == 1 and s["per_api"]["search_hotel"]["failed"] == 0
    assert s["terminations"] == {"max_steps": 1}
    assert s["model_calls"] == {"agent": 1, "user": 1}  # the failed call is not a finished one
    assert s["trees"] == {
        "trees": 1, "with_golden_path": 1, "nodes": 3, "successful_nodes": 1, "golden_nodes": 2,
        "average_nodes": 3.0, "largest": 3,
    }  # fmt: skip


def _table_text(summary: dict) -> str:
    console = Console(record=True, width=200)
    console.print(summary_table(summary, "run"))
    return console.export_text()


def test_the_text_tool_call_line_names_the_flag_that_runs_them() -> None:
    spoken = {**RECORDS[0], "notes": [TEXT_NOTE] * 20}
    line = next(x for x in _table_text(summarize([spoken])).splitlines() if "written as text" in x)
    assert "20 spoken to the customer: --parse-text-tool-calls runs them as tool calls" in line
    mixed = _table_text(summarize(RECORDS))
    assert "2 (1 of them) spoken to the customer: --parse-text-tool-calls runs them as tool calls" in mixed
    run = {**RECORDS[1], "notes": ["turn 2: tool call written as text: a (run as a tool call)"] * 3}
    shown = _table_text(summarize([run]))
    assert "3 (run as tool calls)" in shown and "--parse-text-tool-calls" not in shown
    assert "written as text" not in _table_text(summarize([RECORDS[2]]))
