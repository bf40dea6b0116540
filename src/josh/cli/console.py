"""Shared Rich consoles: results go to stdout, messages and progress to stderr."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from josh.errors import JoshError

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int = 0) -> None:
    """josh's log lines on stderr, above any progress bar: warnings by default, more with -v / -vv.

    `josh serve-mock` lines (one per client reset) are info: shown by default there."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    handler = RichHandler(console=err, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("josh")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("josh.mock").setLevel(min(level, logging.INFO))


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
