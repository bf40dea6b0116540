"""Help texts that read as sentences at any width: each paragraph one line, for Rich to wrap.

Typer's Rich help keeps a docstring's single line breaks as hard breaks, and Rich then wraps the lines
again at the terminal's width, so a paragraph written at 110 columns showed as long and short lines
("(the score:" / "met goal calls / goal calls)") at 80.
"""

from __future__ import annotations

import inspect
import re

import typer
from typer.main import solve_typer_info_help

_BREAK = re.compile(r"[ \t]*\n[ \t]*")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")


def reflow(text: str) -> str:
    """`text` with each paragraph (separated by a blank line) joined into one line; a paragraph that
    starts with click's no-rewrap marker `\\b` is kept as written."""
    paragraphs = _PARAGRAPHS.split(inspect.cleandoc(text))
    return "\n\n".join(p if p.startswith("\b") else _BREAK.sub(" ", p.strip()) for p in paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Reflow the help of `app`, its commands and its groups, recursively (docstrings included)."""
    if isinstance(app.info.help, str):
        app.info.help = reflow(app.info.help)
    for command in app.registered_commands:
        text = command.help if command.help is not None else inspect.getdoc(command.callback)
        if text:
            command.help = reflow(text)
    for group in app.registered_groups:
        text = solve_typer_info_help(group)
        if text:
            group.help = reflow(text)
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)
