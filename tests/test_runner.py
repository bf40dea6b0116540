"""Runner pieces: pass^k, the summary's error accounting, run files and the pool."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from josh.errors import JoshError
from josh.runner import open_run, read_run, run_pool, summarize
from josh.runner.summary import bootstrap_ci, pass_hat_k


def rec(
    task: str, trial: int, reward: float | None, status: str = "success", goals=("search_hotel",), failed=()
):
    return {"task_id": task, "trial": trial, "status": status, "reward": reward, "goal_calls": list(goals),
            "failed_goals": list(failed), "termination": "user_ended" if status == "success" else "error",
            "error": None if status == "success" else "RetryableLLMError: gave up"}  # fmt: skip


def test_pass_hat_k() -> None:
    assert pass_hat_k(2, 4, 1) == 0.5
    assert pass_hat_k(2, 4, 2) == pytest.approx(1 / 6)
    assert pass_hat_k(4, 4, 3) == 1.0 and pass_hat_k(0, 3, 1) == 0.0
    assert pass_hat_k(2, 3, 2) == pytest.approx(1 / 3)  # C(2,2) / C(3,2) = 1/3
    assert pass_hat_k(3, 3, 3) == 1.0  # k == trials is computable
    assert math.isnan(pass_hat_k(3, 2, 3))  # fewer trials than k


def test_pass_hat_k_averages_over_the_tasks_that_have_k_trials() -> None:
    rows = [
        rec("A", 0, 1.0), rec("A", 1, 1.0), rec("A", 2, 0.0),  # 2 of 3 at 1.0
        rec("B", 0, 1.0), rec("B", 1, 1.0), rec("B", 2, 1.0),  # 3 of 3
        rec("C", 0, 1.0), rec("C", 1, 0.5),  # 1 of 2: 0.5 is not a success
        rec("D", 0, 1.0), rec("D", 1, None, "error"), rec("D", 2, 1.0),  # 2 of 3: the error counts as 0
    ]  # fmt: skip
    s = summarize(rows)
    assert s["tasks"] == 4 and s["records"] == 11 and s["trials"] == 3
    # pass^1 = mean(2/3, 3/3, 1/2, 2/3) = (4 + 6 + 3 + 4) / 6 / 4 = 17/24
    # pass^2 = mean(C(2,2)/C(3,2), 1, C(1,2)/C(2,2), C(2,2)/C(3,2)) = (1/3 + 1 + 0 + 1/3) / 4 = 5/12
    # pass^3 = only A, B and D have 3 trials: mean(C(2,3)/1, 1, C(2,3)/1) = (0 + 1 + 0) / 3 = 1/3
    assert s["pass_hat_k"] == pytest.approx({"1": 17 / 24, "2": 5 / 12, "3": 1 / 3})
    assert list(s["pass_hat_k"]) == ["1", "2", "3"]
    # 8 of the 11 records are at 1.0; rewards add up to 2 + 3 + 1.5 + 2 = 8.5
    assert s["perfect"] == 8 and s["success_rate"] == pytest.approx(8 / 11)
    assert s["average_reward"] == pytest.approx(8.5 / 11)
    assert s["average_reward_scored"] == pytest.approx(8.5 / 10)  # the error left out
    assert s["terminations"] == {"user_ended": 10, "error": 1}
    assert s["error_messages"] == {"RetryableLLMError: gave up": 1}


def test_bootstrap_interval_by_hand() -> None:
    # Every resample of equal values has the same mean.
    assert bootstrap_ci([0.5] * 4) == (0.5, 0.5)
    assert bootstrap_ci([]) == (0.0, 0.0)
    # Four 0s and one 1: a resample of 5 holds k ones, k ~ Binomial(5, 1/5), mean k/5.
    # P(k=0) = 0.328, P(k<=2) = 0.942, P(k<=3) = 0.9933: the 2.5% point is k=0 (0.0) and the 97.5%
    # point is k=3 (0.6). Of 2000 resamples ~116 have k>=3 and ~13 have k>=4, so the 1950th sorted mean
    # (97.5%) is 0.6, never the largest (0.8 or 1.0).
    assert bootstrap_ci([0.0, 0.0, 0.0, 0.0, 1.0]) == pytest.approx((0.0, 0.6))
    # The mirror image: four 1s and one 0 -> (1 - 0.6, 1 - 0.0), and the 2.5% point is not the smallest.
    assert bootstrap_ci([1.0, 1.0, 1.0, 1.0, 0.0]) == pytest.approx((0.4, 1.0))
    # Two values: a quarter of the resamples are all 0, a quarter all 1.
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)


def test_summary_interval_is_over_task_means() -> None:
    # Both tasks average 0.5 over their two trials: every resample of task means is 0.5. Over the four
    # records instead (1, 0, 1, 0), 1/16 of the resamples would be all 0 and the interval (0, 1).
    rows = [rec("A", 0, 1.0), rec("A", 1, 0.0), rec("B", 0, 0.0), rec("B", 1, 1.0)]
    assert summarize(rows)["average_reward_ci95"] == [0.5, 0.5]


def test_summary_counts_errors_as_zero_like_the_paper() -> None:
    rows = [
        rec("A", 0, 1.0),
        rec("A", 1, 0.5, failed=["search_hotel"]),
        rec("B", 0, None, "error"),
        rec("B", 1, 1.0),
    ]
    s = summarize(rows)
    assert s["records"] == 4 and s["errors"] == 1 and s["trials"] == 2
    assert s["average_reward"] == pytest.approx(2.5 / 4)
    assert s["average_reward_scored"] == pytest.approx(2.5 / 3)
    assert s["success_rate"] == 0.5 and s["pass_hat_k"] == {"1": 0.5, "2": 0.0}
    assert s["per_api"]["search_hotel"] == {"goal_calls": 4, "failed": 2, "failure_rate": 0.5}
    # the last record of a key wins (a retried error)
    assert summarize([*rows, rec("B", 0, 1.0)])["errors"] == 0


def test_run_file_resume_cuts_a_torn_line_and_refuses_another_config(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = open_run(path, config={"a": 1}, config_hash="h1", seed=1, resume=False, command="test")
    writer.write(rec("A", 0, 1.0))
    writer._handle.write('{"task_id": "B", "tri')  # a kill mid-line
    writer._handle.close()
    writer._lock.release()  # the kernel drops a killed process's lock
    assert read_run(path).torn_bytes > 0
    with pytest.raises(JoshError, match="already exists"):
        open_run(path, config={"a": 1}, config_hash="h1", seed=1, resume=False, command="test")
    with pytest.raises(JoshError, match="differs in: a"):
        open_run(path, config={"a": 2}, config_hash="h2", seed=1, resume=True, command="test")
    again = open_run(path, config={"a": 1}, config_hash="h1", seed=1, resume=True, command="test")
    assert again.done == {("A", 0)}
    again.write(rec("B", 0, 1.0))
    again.close("success")
    contents = read_run(path)
    assert contents.torn_bytes == 0 and [r["task_id"] for r in contents.records] == ["A", "B"]
    assert [s["status"] for s in contents.statuses] == ["resumed", "success"]
    for line in path.read_text().splitlines():
        json.loads(line)


def test_pool_isolates_failures_and_respects_the_limit() -> None:
    running = peak = 0
    results: dict[int, str] = {}

    async def worker(job: int) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if job % 3 == 0:
            raise RuntimeError(f"boom {job}")
        return f"ok {job}"

    asyncio.run(
        run_pool(
            list(range(10)),
            worker,
            concurrency=3,
            on_result=results.__setitem__,
            on_error=lambda job, exc: f"error {job}: {exc}",
        )  # fmt: skip
    )
    assert len(results) == 10 and peak == 3
    assert results[3] == "error 3: boom 3" and results[4] == "ok 4"
    # jobs 0, 3, 6 and 9 failed (job % 3 == 0), each reported as its own job's result
    assert sorted(j for j, r in results.items() if r.startswith("error")) == [0, 3, 6, 9]


def test_pool_of_one_runs_jobs_one_at_a_time_and_refuses_zero() -> None:
    order: list[str] = []

    async def worker(job: int) -> int:
        order.append(f"start {job}")
        await asyncio.sleep(0)
        order.append(f"end {job}")
        return job

    done: list[int] = []
    asyncio.run(run_pool([1, 2], worker, concurrency=1, on_result=lambda j, r: done.append(r),
                         on_error=lambda j, e: -1))  # fmt: skip
    assert order == ["start 1", "end 1", "start 2", "end 2"] and done == [1, 2]
    with pytest.raises(ValueError, match="^concurrency must be >= 1$"):
        asyncio.run(
            run_pool([1], worker, concurrency=0, on_result=lambda j, r: None, on_error=lambda j, e: None)
        )


def test_pool_stops_on_a_stop_exception_and_records_nothing_unfinished() -> None:
    class EndpointDown(Exception):
        pass

    started: list[int] = []
    results: list[int] = []
    errors: list[int] = []

    async def worker(job: int) -> int:
        started.append(job)
        if job == 0:
            return job  # finishes at once: its worker takes job 3 next
        if job == 2:
            await asyncio.sleep(0)  # jobs 1 and 3 are in flight when this one fails
            raise EndpointDown()
        await asyncio.sleep(30)
        return job

    def on_error(job: int, exc: BaseException) -> int:
        errors.append(job)
        return -1

    with pytest.raises(EndpointDown):
        asyncio.run(
            run_pool(
                list(range(10)),
                worker,
                concurrency=3,
                on_result=lambda j, r: results.append(r),
                on_error=on_error,
                stop_on=(EndpointDown,),
            )  # fmt: skip
        )
    assert results == [0] and errors == []  # in-flight jobs 1 and 3 were cancelled, not recorded
    assert sorted(started) == [0, 1, 2, 3]  # jobs 4-9 never started


def test_summary_cost_is_unpriced_when_a_priced_role_is_unknown() -> None:
    priced = {**rec("T1", 0, 1.0), "agent_usage": {"cost": 0.25}, "user_usage": {"cost": 0.5},
              "agent_model_calls": 2, "user_model_calls": 2}  # fmt: skip
    unpriced = {**rec("T2", 0, 1.0), "agent_usage": {"cost": None}, "user_usage": {"cost": 0.125},
                "agent_model_calls": 3, "user_model_calls": 1}  # fmt: skip
    no_calls = {**rec("T3", 0, 1.0), "agent_usage": {"cost": None}, "agent_model_calls": 0}
    assert summarize([priced, no_calls])["cost_usd"] == {"agent": 0.25, "user": 0.5, "total": 0.75}
    both = summarize([priced, unpriced])["cost_usd"]
    assert both == {"agent": None, "user": 0.625, "total": None}
