"""The shared console's wording helpers."""

from __future__ import annotations

from josh.cli.console import counted


def test_counted_puts_one_in_the_singular() -> None:
    assert [counted(n, "tree") for n in (0, 1, 2, 1000)] == ["0 trees", "1 tree", "2 trees", "1,000 trees"]
    assert counted(1, "bad line") == "1 bad line" and counted(3, "entry", "entries") == "3 entries"
