"""Shared Rich consoles: results go to stdout, messages and progress to stderr."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions, ConsoleRenderable
from rich.logging import RichHandler
from rich.markup import escape
from rich.text import Text

from josh.errors import JoshError

PIPED_WIDTH = 200  # the widest a table grows in a pipe or a file (its messages are never cut)


class _Console(Console):
    """A Rich console whose lines never break where its output is not a terminal (a pipe, a file): there
    each message is one line, for grep, and a table takes up to PIPED_WIDTH columns (Rich would take 80,
    or the width COLUMNS sets)."""

    def piped(self) -> bool:
        """True when the output is not a terminal, whatever FORCE_COLOR says about colours."""
        try:
            return not self.file.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed file
            return True

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return self._soft_wrap or self.piped()

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.piped() and self._width is None and size.width < PIPED_WIDTH:  # COLUMNS=N still rules
            return ConsoleDimensions(PIPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


class _LogHandler(RichHandler):
    """Rich's log lines; where the output is not a terminal, each record is one line (`WARNING  message`),
    not a grid padded and wrapped to the console's width."""

    def render(
        self, *, record: logging.LogRecord, traceback: Any, message_renderable: ConsoleRenderable
    ) -> ConsoleRenderable:
        if (
            isinstance(self.console, _Console)
            and self.console.piped()
            and isinstance(message_renderable, Text)
        ):
            return Text.assemble(self.get_level_text(record), " ", message_renderable)
        return super().render(record=record, traceback=traceback, message_renderable=message_renderable)


err = _Console(stderr=True, highlight=False)
out = _Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int = 0) -> None:
    """josh's log lines on stderr, above any progress bar: warnings by default, more with -v / -vv.

    `josh serve-mock` lines (one per client reset) are info: shown by default there."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    handler = _LogHandler(console=err, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("josh")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("josh.mock").setLevel(min(level, logging.INFO))


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun in the right number: `1 tree`, `2 trees`, `1,000 trees` (`plural` where an s
    does not make it)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def report(message: str) -> None:
    """Progress line for long steps (fetch, build)."""
    err.print(f"[dim]josh:[/dim] {escape(message)}", soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn the errors a user can cause into one clear message and exit code 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JoshError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]
