"""Shared Rich consoles: results go to stdout, messages and progress to stderr."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from josh.errors import JoshError

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


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
