"""An exclusive lock on a run file for the life of a run, held on a sidecar `RUN.jsonl.lock`.

Two runs writing one file would damage it (both create it) or record tasks twice (both resume it), so
`open_run` takes this lock before it reads or creates the file and `RunWriter.close` releases it.

The lock is an OS lock (`flock`; on Windows `msvcrt.locking`) on a file that is never deleted and never
truncated when opened: the kernel drops the lock when its holder exits, even on SIGKILL, so a stale lock
cannot block, and a run that fails to get it can read who holds it. (`filelock` opens its lock file with
O_TRUNC, which would erase the holder's note each time another run tried it.) Deleting the lock file on
release would race: a third run could lock a fresh file while a second still holds the old, unlinked one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from josh.errors import JoshError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# On Windows a locked byte cannot be read by anyone else, so lock one far past the holder's note.
_WINDOWS_LOCK_OFFSET = 1 << 30


class RunLockedError(JoshError):
    """Another josh run holds the lock of this run file."""


def lock_path(path: Path) -> Path:
    """RUN.jsonl -> RUN.jsonl.lock."""
    return path.with_name(path.name + ".lock")


class RunLock:
    """An exclusive lock on `lock_path(path)`. Get one with `RunLock.acquire`; `release` is idempotent."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, *, command: str) -> RunLock:
        """Lock `path` (a run file) without waiting. Raises `RunLockedError` naming the holder when another
        process (or another open in this process) holds it; `command` is what this holder says it is."""
        lock_file = lock_path(path)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)  # no O_TRUNC: the holder's note stays
        except OSError as exc:
            raise JoshError(f"cannot create the lock file {lock_file}: {exc.strerror}") from None
        try:
            locked = _try_lock(fd)
        except OSError as exc:  # e.g. a file system without locks: run, but say so
            log.warning("cannot lock %s (%s); make sure no other josh run writes %s", lock_file, exc, path)
            locked = True
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            holder = _read_note(fd)
            os.close(fd)
            raise RunLockedError(
                f"{path} is being written by another josh run ({_describe(holder)}); "
                "wait for it to finish or choose another --out"
            )
        try:
            _write_note(fd, command)
        except OSError as exc:  # the lock holds even if the note cannot be written
            log.debug("cannot write the holder's note to %s: %s", lock_file, exc)
        return cls(path, fd)

    def release(self) -> None:
        """Clear the holder's note and unlock (the file stays, see the module's docstring)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with suppress(OSError):
                os.ftruncate(fd, 0)
            with suppress(OSError):
                _unlock(fd)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


@contextmanager
def run_lock(path: Path, *, command: str) -> Iterator[RunLock]:
    """Hold the lock of run file `path` inside a `with` block, e.g. for code that must read it while no
    run appends to it. Raises `RunLockedError` when a run holds it."""
    lock = RunLock.acquire(path, command=command)
    try:
        yield lock
    finally:
        lock.release()


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    except OSError:  # untested here: josh's tests run on Linux and macOS
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    import msvcrt

    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _write_note(fd: int, command: str) -> None:
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    data = (json.dumps(note, default=str) + "\n").encode("utf-8", errors="replace")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def _read_note(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 64 * 1024)
        note = json.loads(data.decode("utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None  # the holder is between locking and writing its note, or wrote something odd
    return note if isinstance(note, dict) else None


def _describe(note: dict[str, Any] | None) -> str:
    if not note:
        return "holder unknown"
    return f"pid {note.get('pid', '?')} on {note.get('host', '?')}, `{note.get('command', '?')}`, since {note.get('since', '?')}"
