"""`josh view`: a trees or eval run file as one self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from josh.cli.console import out, user_errors
from josh.view import write_report


@user_errors
def view(
    path: Annotated[
        Path,
        typer.Argument(help="A run file: the trees of `josh harvest` or the conversations of `josh eval`."),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the HTML report (default: FILE with .html)."),
    ] = None,
) -> None:
    """Write one self-contained HTML report (no network needed) for a trees or eval run file.

    Trees: each tree drawn with its branches, the customer's, the agent's and the tools' turns, where goals
    were met, the golden path highlighted and pruned branches greyed; a task list with rewards and a search
    by task id; click a node to read the conversation up to it. Eval runs: one conversation at a time, with
    its tool calls, rewards, failed goals and errors, failed conversations first. Damaged lines of the file,
    and records that are not valid trees or conversations, are skipped with a warning naming each.
    """
    target = output if output is not None else path.with_suffix(".html")
    written = write_report(path, target)
    what = "trees" if written.kind == "trees" else "conversations"
    left_out = f", {written.left_out:,} line(s) left out (see the warnings)" if written.left_out else ""
    out.print(
        f"wrote {written.path}: {written.items:,} {what}, {_size(written.bytes)}{left_out}",
        soft_wrap=True,
        markup=False,
    )


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{max(1, round(count / 1e3))} kB"
