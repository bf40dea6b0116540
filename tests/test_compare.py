"""The paired comparison of two runs: permutation p-values and intervals worked out by hand."""

from __future__ import annotations

import pytest

from josh.runner.compare import compare_runs, permutation_p_value, task_rewards


def rec(task: str, reward: float | None, trial: int = 0, status: str = "success") -> dict:
    return {"task_id": task, "trial": trial, "status": status, "reward": reward}


def test_exact_permutation_p_values() -> None:
    # Three equal gains: of the 8 sign patterns only all-plus and all-minus reach |sum| = 3.
    assert permutation_p_value([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)
    # Five equal gains: 2 of 32 patterns.
    assert permutation_p_value([0.5] * 5) == pytest.approx(2 / 32)
    # Zeros carry no information: one non-zero difference -> both signs reach it -> p = 1.
    assert permutation_p_value([0.5, 0.0, 0.0]) == 1.0
    # [1, 1, -1]: |sum| = 1, and any signs on three 1s give an odd sum, so |sum| >= 1 always: p = 1.
    assert permutation_p_value([1.0, 1.0, -1.0]) == 1.0
    # [2, 1]: observed 3; patterns: 3, 1, -1, -3 -> two reach 3: p = 2/4.
    assert permutation_p_value([2.0, 1.0]) == pytest.approx(0.5)
    assert permutation_p_value([]) == 1.0


def test_sampled_permutation_p_value_for_many_tasks() -> None:
    # 30 identical gains: the exact p is 2 / 2**30, far below the sampled floor 1 / 20001.
    p = permutation_p_value([0.25] * 30)
    assert p == pytest.approx(1 / 20_001)


def test_compare_pairs_tasks_and_counts_errors_as_zero() -> None:
    a = [rec("T1", 1.0), rec("T2", 0.5), rec("T3", None, status="error"), rec("T4", 1.0)]
    b = [rec("T1", 1.0), rec("T2", 1.0), rec("T3", 1.0), rec("T5", 0.0)]
    assert task_rewards(a) == {"T1": 1.0, "T2": 0.5, "T3": 0.0, "T4": 1.0}
    result = compare_runs(a, b)
    # Shared: T1 (0), T2 (+0.5), T3 (+1.0 since the error counts 0).
    assert (result["common"], result["only_a"], result["only_b"]) == (3, 1, 1)
    assert (result["better"], result["worse"], result["equal"]) == (2, 0, 1)
    assert result["mean_a"] == pytest.approx(0.5) and result["mean_b"] == pytest.approx(1.0)
    assert result["mean_difference"] == pytest.approx(0.5)
    # Non-zero differences 0.5 and 1.0: sums 1.5, 0.5, -0.5, -1.5 -> p = 2/4.
    assert result["p_value"] == pytest.approx(0.5)
    low, high = result["difference_ci95"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_trials_are_averaged_per_task_before_pairing() -> None:
    a = [rec("T1", 1.0, 0), rec("T1", 0.0, 1)]
    b = [rec("T1", 1.0, 0), rec("T1", 1.0, 1)]
    result = compare_runs(a, b)
    assert result["common"] == 1 and result["mean_difference"] == pytest.approx(0.5)


def test_no_shared_task() -> None:
    result = compare_runs([rec("T1", 1.0)], [rec("T2", 1.0)])
    assert result["common"] == 0 and result["p_value"] is None and result["difference_ci95"] is None


def test_the_exact_test_covers_sixteen_differences_and_sampling_counts_ties() -> None:
    # 16 equal gains are tested exactly: 2 of the 2**16 sign patterns reach |sum| = 8.
    assert permutation_p_value([0.5] * 16) == 2 / 2**16
    # 17 unit differences (9 up, 8 down) are sampled: every flip of 17 units has an odd sum, so |sum| >= 1,
    # the observed |sum|: all 20,000 flips count, p = (20,000 + 1) / (20,000 + 1).
    assert permutation_p_value([1.0] * 9 + [-1.0] * 8) == 1.0


def interval(differences: list[float]) -> tuple[float, float] | None:
    """The paired interval `compare_runs` gives when run b beats run a by `differences`, task by task."""
    a = [rec(f"T{i}", 0.0) for i in range(len(differences))]
    b = [rec(f"T{i}", d) for i, d in enumerate(differences)]
    ci = compare_runs(a, b)["difference_ci95"]
    return None if ci is None else (ci[0], ci[1])


def test_paired_bootstrap_interval_by_hand() -> None:
    assert interval([]) is None
    assert interval([0.25] * 3) == (0.25, 0.25)
    # As for the summary's interval (tests/test_runner.py): resamples of four 0s and one 1 hold k ones,
    # k ~ Binomial(5, 1/5); the 2.5% point is k=0 and the 97.5% point k=3 (mean 0.6).
    assert interval([0.0, 0.0, 0.0, 0.0, 1.0]) == pytest.approx((0.0, 0.6))
    assert interval([1.0, 1.0, 1.0, 1.0, 0.0]) == pytest.approx((0.4, 1.0))


def test_counts_and_the_named_test() -> None:
    # differences (b - a): T1 0, T2 -0.5, T3 +0.25
    a = [rec("T1", 1.0), rec("T2", 1.0), rec("T3", 0.5)]
    b = [rec("T1", 1.0), rec("T2", 0.5), rec("T3", 0.75)]
    result = compare_runs(a, b)
    assert (result["better"], result["worse"], result["equal"]) == (1, 1, 1)
    assert result["mean_difference"] == pytest.approx(-0.25 / 3)
    assert (
        result["test"]
        == "paired permutation test (two-sided) over per-task mean rewards, errors counted as 0"
    )


def test_sampling_is_seeded_the_same_every_time() -> None:
    differences = [0.5, -0.25, 1.0, 0.0, 0.75, -0.5] * 4  # 20 non-zero: sampled
    assert permutation_p_value(differences) == permutation_p_value(differences)
    assert interval([d + 1.0 for d in differences]) == interval([d + 1.0 for d in differences])
