"""`--help` reads as sentences at any width: no paragraph keeps the line breaks of its docstring."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from josh.cli.help_text import reflow
from josh.cli.main import app
from tests.test_readme import _commands

WIDTH = 80
PATHS = [path for path, _ in _commands(typer.main.get_command(app))]


def shown_help(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def _last_cell(body: str) -> int:
    """Where the text of a line's last column starts (after the last gap of two spaces or more)."""
    start = len(body) - len(body.lstrip(" │"))
    gaps = [m.end() for m in re.finditer(r" {2,}", body) if m.start() > start]
    return gaps[-1] if gaps else start


def _text_columns(lines: list[str]) -> list[int | None]:
    """For each line, the column where running text may go on to the next line: a paragraph's start, or a
    panel's last (help) column; None for a panel line ending in a narrower column (a metavar folds there)."""
    columns: list[int | None] = []
    panel: list[int] = []
    for line in lines:
        body = line.rstrip(" │")
        if line.startswith("╭"):
            end = next(i for i in range(len(columns), len(lines)) if lines[i].startswith("╰"))
            panel = [_last_cell(row.rstrip(" │")) for row in lines[len(columns) + 1 : end]]
        if line.startswith("│"):
            columns.append(_last_cell(body) if _last_cell(body) == max(panel) else None)
        else:
            columns.append(_last_cell(body))
    return columns


def hard_breaks(text: str) -> list[str]:
    """Lines that end early although the next line, continuing the same paragraph or table cell, starts
    with a word that would have fitted: Rich fills lines greedily, so only a kept line break does that."""
    found = []
    lines = text.splitlines()
    columns = _text_columns(lines)
    for line, following, column in zip(lines, lines[1:], columns, strict=False):
        body, nxt = line.rstrip(" │"), following.rstrip(" │")
        if column is None or not body.strip(" │") or not nxt.strip(" │"):
            continue
        start = len(nxt) - len(nxt.lstrip(" │"))
        if start != column or not nxt[start].islower():
            continue  # not the same paragraph or cell going on
        right = line.rstrip().rfind("│") - 1 if line.startswith("│") else WIDTH - 1
        if len(body) + 1 + len(nxt[start:].split()[0]) <= right:
            found.append(f"{line.rstrip()}\n{following.rstrip()}")
    return found


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(("josh", *p)) for p in PATHS])
def test_help_paragraphs_are_reflowed_at_80_columns(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    found = hard_breaks(shown_help(path, monkeypatch))
    assert not found, "\n---\n".join(found)


@pytest.mark.parametrize(
    ("path", "sentence", "across"),
    [
        (("score",), '"reward" (the score: met goal calls / goal calls), "reward_events"', "the score: met"),
        (
            ("eval", "tau2"),
            "(read from the installed tau2 package; --prompts josh for josh's wording)",
            "installed tau2 package;",
        ),
        ((), "each run's settings, metrics side by side, and a paired permutation test", "and a paired"),
    ],
)
def test_known_sentences_show_whole(
    path: tuple[str, ...], sentence: str, across: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sentence reads whole, and on one line where its docstring broke it (`across`)."""
    shown = shown_help(path, monkeypatch)
    assert sentence in " ".join(shown.replace("│", " ").split())
    assert any(across in line for line in shown.splitlines())


def test_reflow_joins_lines_and_keeps_paragraphs_and_no_rewrap_blocks() -> None:
    assert (
        reflow("One line\n    and the next.\n\n  Second\n  paragraph.")
        == "One line and the next.\n\nSecond paragraph."
    )
    assert reflow("Text.\n\n\b\nkept\nas is") == "Text.\n\n\b\nkept\nas is"


def test_the_hard_break_check_finds_one() -> None:
    """The check itself: the score help as typer 0.29 showed it before (a docstring's own break kept)."""
    old = (
        ' Each output line: the same fields plus "results" (each call\'s tool result),    \n'
        ' "reward" (the score:                                                           \n'
        " met goal calls / goal calls), and more.                                        \n"
    )
    assert len(hard_breaks(old)) == 1 and re.search(r"the score:", hard_breaks(old)[0])
