"""Errors a user can cause. The CLI turns each into one clear message, never a traceback."""

from __future__ import annotations


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
