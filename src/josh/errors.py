"""Errors a user can cause. The CLI turns each into one clear message, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class JoshError(Exception):
    """An error the user can fix; its message says how."""


class DataError(JoshError):
    """The ToolWOZ data could not be fetched, verified or built."""


class UnknownTaskError(JoshError, KeyError):
    """A task id that is not one of the ToolWOZ tasks."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown task"


class ProtocolViolation(Exception):  # noqa: N818 - a violation is what it is, not a failure of josh
    """A model's output that crashes the paper's reference implementation (which then scores the
    conversation 0). Raised only under strict errors; the rollout ends the conversation there with reward 0
    (termination `agent_error`). Not a user error: it is part of the simulation."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'max-turns'?)` after an unknown name when a known one is close, else nothing: the one
    suggester of every config file's keys. Names are compared as written in files (dashes, not underscores)."""
    names = [k.replace("_", "-") for k in known]
    close = difflib.get_close_matches(name.replace("_", "-"), names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
