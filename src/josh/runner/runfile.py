"""Append-only run files: a versioned header line, then one JSON line per finished task.

A killed run loses at most the line being written; `resume` skips the keys already recorded and refuses a
file made with a different configuration. The file is never rewritten, only appended to (a torn last
line from a kill is cut off first).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from josh import __version__
from josh.errors import JoshError

FORMAT_VERSION = 1


def _git_state() -> tuple[str | None, bool | None]:
    """The commit of the josh checkout this code runs from, and whether it has local changes."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit or None, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RunContents:
    """What a run file holds: its header, its records (last one per key wins) and status lines."""

    header: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    torn_bytes: int = 0  # length of an incomplete last line (a run killed mid-write)

    def keyed(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(r["task_id"], int(r.get("trial", 0))): r for r in self.records}


def read_run(path: Path) -> RunContents:
    """Read a run file. Raises JoshError with a clear message for anything that is not one."""
    if not path.is_file():
        raise JoshError(f"{path} does not exist")
    data = path.read_bytes()
    torn = 0
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        torn = len(data) - cut
        data = data[:cut]
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines:
        raise JoshError(f"{path} is empty: not a josh run file")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("type") != "header":
        raise JoshError(f"{path} is not a josh run file (its first line is not a josh header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise JoshError(
            f"{path} has run-file format {header.get('format_version')}; this josh reads {FORMAT_VERSION}"
        )
    contents = RunContents(header=header, torn_bytes=torn)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JoshError(
                f"{path}:{number} is not valid JSON ({exc.msg}); the run file is damaged"
            ) from None
        if item.get("type") == "status":
            contents.statuses.append(item)
        else:
            contents.records.append(item)
    return contents


class RunWriter:
    """Appends records to a run file, flushing each line. Use `open_run` to create or resume one."""

    def __init__(
        self,
        path: Path,
        handle: IO[str],
        header: dict[str, Any],
        done: set[tuple[str, int]],
        errored: set[tuple[str, int]] | None = None,
    ):
        self.path = path
        self._handle = handle
        self.header = header
        self.done = done
        self.errored = errored or set()  # keys whose latest record is an error (see --retry-errors)

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        key = (record["task_id"], int(record.get("trial", 0)))
        self.done.add(key)
        if record.get("status") == "error":
            self.errored.add(key)
        else:
            self.errored.discard(key)

    def close(self, status: str) -> None:
        """Append the final status line (`success`, `error` or `cancelled`) and close."""
        if not self._handle.closed:
            self.write_status(status)
            self._handle.close()

    def write_status(self, status: str) -> None:
        line = {"type": "status", "status": status, "at": now_iso(), "records": len(self.done)}
        self._handle.write(json.dumps(line) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())


def open_run(
    path: Path, *, config: dict[str, Any], config_hash: str, seed: int | None, resume: bool, command: str
) -> RunWriter:
    """Create a run file, or reopen it with `resume` (same config hash only). Never asks a question."""
    if path.exists() and path.stat().st_size > 0:
        if not resume:
            raise JoshError(
                f"{path} already exists; pass --resume to continue that run, or choose another --out"
            )
        contents = read_run(path)
        old = contents.header.get("config_hash")
        if old != config_hash:
            differs = sorted(_diff(contents.header.get("config", {}), config))
            raise JoshError(
                f"{path} was made with a different configuration (hash {old} vs {config_hash}; "
                f"differs in: {', '.join(differs) or 'unknown'}); resume it with the same options or use another --out"
            )
        if contents.torn_bytes:
            with open(path, "rb+") as fh:  # cut the line a kill left half-written
                fh.truncate(path.stat().st_size - contents.torn_bytes)
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        keyed = contents.keyed()
        errored = {k for k, r in keyed.items() if r.get("status") == "error"}
        writer = RunWriter(path, handle, contents.header, set(keyed), errored)
        handle.write(json.dumps({"type": "status", "status": "resumed", "at": now_iso()}) + "\n")
        handle.flush()
        return writer
    path.parent.mkdir(parents=True, exist_ok=True)
    commit, dirty = _git_state()
    header = {
        "type": "header",
        "format_version": FORMAT_VERSION,
        "josh_version": __version__,
        "git_commit": commit,
        "dirty": dirty,
        "command": command,
        "config_hash": config_hash,
        "config": config,
        "seed": seed,
        "status": "started",
        "started_at": now_iso(),
    }
    handle = open(path, "w", encoding="utf-8")  # noqa: SIM115
    handle.write(json.dumps(header) + "\n")
    handle.flush()
    return RunWriter(path, handle, header, set())


def _diff(old: Any, new: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in set(old) | set(new):
            yield from _diff(old.get(key), new.get(key), f"{prefix}{key}.")
    elif old != new:
        yield prefix.rstrip(".")
