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
