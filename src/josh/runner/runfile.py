"""Append-only run files: a versioned header line, then one JSON line per finished task.

A killed run loses at most the line being written; `resume` skips the keys already recorded and refuses a
file made with a different configuration. The file is never rewritten, only appended to (a torn last
line from a kill is cut off first), and only by the run holding its lock (`josh.runner.lock`). A damaged
line costs only its own task, which a resume runs again; every record written can be read back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import IO, Any

from josh import __version__
from josh.errors import JoshError
from josh.runner.lock import RunLock
from josh.runner.text_encoding import sniff_encoding
from josh.types import bounded, dumps_line

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


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


# How deep a written line may nest: CPython's json reader gives up near 1,000 levels minus its caller's stack,
# so a record deeper than this is cut (with `bounded`) before it is written, to stay readable anywhere.
MAX_LINE_DEPTH = 200
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_HEADER_START = b'{"type": "header"'  # how `open_run` begins every file (json.dumps of the header)


class UnstartedRunError(JoshError):
    """The file is empty, or holds only the start of a header (a run killed as it began): no run yet."""


@dataclass
class RunContents:
    """What a run file holds: its header, its records (last one per key wins), status lines, and the lines
    that could not be read (`damaged`: line number and reason, a torn last line included; their tasks count
    as not done)."""

    header: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    torn_bytes: int = 0  # length of an incomplete last line (a run killed mid-write)
    damaged: list[tuple[int, str]] = field(default_factory=list)

    def keyed(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(r["task_id"], int(r.get("trial", 0))): r for r in self.records}

    @property
    def previous_wall_s(self) -> float:
        """Seconds of wall time the runs that wrote this file reported (`wall_s` of each status line)."""
        return sum(
            s["wall_s"]
            for s in self.statuses
            if isinstance(s.get("wall_s"), int | float)
            and not isinstance(s.get("wall_s"), bool)
            and math.isfinite(s["wall_s"])
        )


def read_run(path: Path, *, resuming: bool = False) -> RunContents:
    """Read a run file. Damaged lines, and a torn last line, are skipped (listed in `damaged`, with one logged
    warning; `resuming`: a run about to run their tasks again says so); anything that is not a run file
    raises JoshError with a clear message, whatever bytes it holds. A file with a byte-order mark, or in
    UTF-16, is read as such (see `_as_utf8`)."""
    if not path.is_file():
        raise JoshError(f"{path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JoshError(f"cannot read {path}: {exc.strerror}") from None
    data, named = _as_utf8(data)
    if named is not None:
        log.info("%s is %s: read as such (josh writes UTF-8)", path, named)
    end = data.find(b"\n")
    header = _parse_header(path, data if end < 0 else data[:end], complete=end >= 0)
    body = data[end + 1 :]
    torn = 0
    if body and not body.endswith(b"\n"):
        cut = body.rfind(b"\n") + 1
        torn = len(body) - cut
        body = body[:cut]
    contents = RunContents(header=header, torn_bytes=torn)
    lines = body.split(b"\n")[:-1]
    for number, raw in enumerate(lines, start=2):
        if not raw.strip():
            continue
        item, problem = _parse_line(raw)
        if problem is not None:
            contents.damaged.append((number, problem))
        elif item.get("type") == "status":
            contents.statuses.append(item)
        else:
            contents.records.append(item)
    if torn:
        contents.damaged.append(
            (len(lines) + 2, f"torn ({torn:,} bytes without a newline: a run killed while writing it)")
        )
    if contents.damaged:
        shown = "; ".join(f"line {n}: {why}" for n, why in contents.damaged[:10])
        more = f"; and {len(contents.damaged) - 10} more" if len(contents.damaged) > 10 else ""
        again = "; their tasks count as not done and run again on --resume" if resuming else ""
        log.warning(
            "%s: skipped %d damaged line(s) (%s%s)%s", path, len(contents.damaged), shown, more, again
        )
    return contents


def _as_utf8(data: bytes) -> tuple[bytes, str | None]:
    """A run file's bytes as UTF-8, decoded once: a UTF-8 byte-order mark dropped, UTF-16 (with or without a
    mark, as `josh score` reads it) decoded, a code unit that does not decode becoming U+FFFD. With the
    name of the encoding when it is not UTF-8 (None when it is)."""
    codec, bom, named = sniff_encoding(data[:4])
    if codec == "utf-8":
        return data[bom:], None
    return data[bom:].decode(codec, errors="replace").encode("utf-8"), named


def _parse_header(path: Path, first: bytes, *, complete: bool) -> dict[str, Any]:
    """The header from the file's first line (`complete`: it ends in a newline), or a JoshError."""
    if not first and not complete:
        raise UnstartedRunError(f"{path} is empty: not a josh run file yet")
    if not complete and (_HEADER_START.startswith(first) or first.startswith(_HEADER_START)):
        raise UnstartedRunError(
            f"{path} holds only a torn header (a run killed as it started); run it again to start over"
        )
    try:
        header = json.loads(first.decode("utf-8")) if complete else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("type") != "header":
        raise JoshError(f"{path} is not a josh run file (its first line is not a josh header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise JoshError(
            f"{path} has run-file format {header.get('format_version')}; this josh reads {FORMAT_VERSION}"
        )
    return header


def _parse_line(raw: bytes) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """A record or status line, or why it is not one."""
    try:
        item = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except RecursionError:
        return None, "nested too deeply to read"
    except ValueError as exc:
        return None, f"not valid JSON ({getattr(exc, 'msg', exc)})"
    if not isinstance(item, dict):
        return None, "not a JSON object"
    kind = item.get("type")
    if kind == "status":
        return item, None
    if kind == "header":
        return None, "a second header (two runs wrote this file)"
    if "task_id" not in item or item["task_id"] is None:
        return None, "no task_id"
    if not isinstance(item["task_id"], str):
        return None, "task_id is not a string"
    if not item["task_id"]:
        return None, "task_id is empty"
    trial = item.get("trial", 0)
    if not isinstance(trial, int) or isinstance(trial, bool):
        return None, "trial is not an integer"
    return item, None


def _first_line(path: Path) -> tuple[bytes, bool, str | None]:
    """The first line of `path` in UTF-8 without its newline, whether it is complete, and the name of the
    file's encoding when it is not UTF-8 (see `_as_utf8`); reads a UTF-8 file only that far."""
    chunks: list[bytes] = []
    with open(path, "rb") as fh:
        head = fh.read(4)
        codec, bom, _ = sniff_encoding(head)
        if codec != "utf-8":  # UTF-16: rare enough to decode whole
            data, named = _as_utf8(head + fh.read())
            end = data.find(b"\n")
            return (data if end < 0 else data[:end]), end >= 0, named
        chunk = head[bom:]
        while True:
            end = chunk.find(b"\n")
            if end >= 0:
                chunks.append(chunk[:end])
                return b"".join(chunks), True, None
            chunks.append(chunk)
            chunk = fh.read(1 << 16)
            if not chunk:
                return b"".join(chunks), False, None


def _json_depth(line: str) -> int:
    """How deep the JSON text `line` nests (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", line))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _nesting(obj: Any, limit: int) -> int | None:
    """How deep the dicts, lists and tuples of `obj` nest, counted level by level up to `limit` + 1; None when
    it holds a subclass of one (how deep its JSON goes is then for the encoder to say)."""
    depth, level = 0, [obj]
    while depth <= limit:
        below: list[Any] = []
        containers = False
        for value in level:
            kind = type(value)
            if kind in _SCALARS:
                continue
            if kind is dict:
                below.extend(value.values())
            elif kind is list or kind is tuple:
                below.extend(value)
            elif issubclass(kind, dict | list | tuple):
                return None
            else:
                continue  # anything else is written as text (`default=str`)
            containers = True
        if not containers:
            return depth
        depth += 1
        level = below
    return depth


def encode_line(obj: Any) -> str:
    """`obj` as one JSON line (with its newline) that any reader can parse: lone surrogates replaced, non-JSON
    values written as text, nesting cut at MAX_LINE_DEPTH. Never raises."""
    line = dumps_line(obj)
    nesting = _nesting(obj, MAX_LINE_DEPTH)
    if nesting is not None and nesting <= MAX_LINE_DEPTH:
        return line + "\n"  # a record's usual case: reading the object is ~4x quicker than reading the line
    if line.count("[") + line.count("{") > MAX_LINE_DEPTH and _json_depth(line) > MAX_LINE_DEPTH:
        line = dumps_line(bounded(obj, MAX_LINE_DEPTH))
    return line + "\n"


class RunWriter:
    """Appends records to a run file, flushing each line, and holds the file's lock until `close`.
    Use `open_run` to create or resume one; `previous` is what a resumed file held (None for a new one)."""

    def __init__(
        self,
        path: Path,
        handle: IO[str],
        header: dict[str, Any],
        done: set[tuple[str, int]],
        errored: set[tuple[str, int]] | None = None,
        lock: RunLock | None = None,
        previous: RunContents | None = None,
    ):
        self.path = path
        self._handle = handle
        self.header = header
        self.done = done
        self.errored = errored or set()  # keys whose latest record is an error (see --retry-errors)
        self._lock = lock
        self.previous = previous
        self.written: set[tuple[str, int]] = set()  # the keys this run has appended (not those resumed)

    def write(self, record: dict[str, Any]) -> bool:
        """Append one finished task's record. Never fails on what the record holds (see `encode_line`).

        A second record of a key this run already wrote is dropped (False): one record per (task, trial)
        and run, even when a retried Ray task sends its tree again. A key recorded by an earlier run of the
        file (`--resume --retry-errors`) is written again, and the last line wins."""
        key = (record["task_id"], int(record.get("trial", 0)))
        if key in self.written:
            log.debug("dropped a second record of %s trial %d", *key)
            return False
        self._handle.write(encode_line(record))
        self._handle.flush()
        self.written.add(key)
        self.done.add(key)
        if record.get("status") == "error":
            self.errored.add(key)
        else:
            self.errored.discard(key)
        return True

    def close(self, status: str, **extra: Any) -> None:
        """Append the final status line (`success`, `error` or `cancelled`, plus `extra` fields such as
        `wall_s`), close the file and release its lock. A second call does nothing."""
        try:
            if not self._handle.closed:
                try:
                    self.write_status(status, **extra)
                finally:
                    self._handle.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def write_status(self, status: str, **extra: Any) -> None:
        """Append a status line (`records` defaults to the number of keys done) and sync it to disk."""
        line = {"type": "status", "status": status, "at": now_iso(), "records": len(self.done), **extra}
        line.update(type="status", status=status)
        self._handle.write(encode_line(line))
        self._handle.flush()
        os.fsync(self._handle.fileno())


def open_run(
    path: Path, *, config: dict[str, Any], config_hash: str, seed: int | None, resume: bool, command: str
) -> RunWriter:
    """Create a run file, or reopen it with `resume` (same config hash only). Never asks a question.

    Takes an exclusive lock on `PATH.lock` first (RunLockedError, naming the holder, if another run has it)
    and holds it until `RunWriter.close`. An empty file, or one holding only a torn header, is started anew.
    """
    check_writable(path)
    lock = RunLock.acquire(path, command=command)
    try:
        return _open_locked(
            path, lock, config=config, config_hash=config_hash, seed=seed, resume=resume, command=command
        )
    except OSError as exc:
        lock.release()
        raise JoshError(f"cannot write the run file {path}: {exc.strerror or exc}") from None
    except BaseException:
        lock.release()
        raise


def check_writable(path: Path) -> None:
    """Make the run file's folder and check the file can be written there; `JoshError` if not. Call it
    before any work, so that a bad --out costs nothing."""
    existing = next((folder for folder in path.parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        raise JoshError(
            f"cannot write the run file {path}: {existing} is a file, not a folder; choose another --out"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        probe = path if path.exists() else path.with_name(f".{path.name}.{os.getpid()}.probe")
        with open(probe, "a", encoding="utf-8"):
            pass
        if probe != path:
            probe.unlink()
    except OSError as exc:
        raise JoshError(
            f"cannot write the run file {path}: {exc.strerror or exc}; choose another --out"
        ) from None


def _open_locked(
    path: Path,
    lock: RunLock,
    *,
    config: dict[str, Any],
    config_hash: str,
    seed: int | None,
    resume: bool,
    command: str,
) -> RunWriter:
    started = False
    if path.exists():
        try:
            first, complete, named = _first_line(path)
        except OSError as exc:
            raise JoshError(f"cannot read {path}: {exc.strerror}") from None
        try:
            _parse_header(path, first, complete=complete)
            started = True
        except UnstartedRunError:
            if first:
                log.warning(
                    "%s holds only a torn header (a run killed as it started); starting it over", path
                )
        if started and named is not None:  # appending UTF-8 lines to it would make a file of two encodings
            raise JoshError(
                f"{path} is a run file in {named}: josh reads it but writes only UTF-8, so it cannot "
                f"continue it; convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8 {path} > NEW.jsonl) or "
                "choose another --out"
            )
    if started:
        if not resume:
            raise JoshError(
                f"{path} already exists; pass --resume to continue that run, or choose another --out"
            )
        contents = read_run(path, resuming=True)
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
        keyed = contents.keyed()
        errored = {k for k, r in keyed.items() if r.get("status") == "error"}
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        writer = RunWriter(path, handle, contents.header, set(keyed), errored, lock, contents)
        try:
            handle.write(encode_line({"type": "status", "status": "resumed", "at": now_iso()}))
            handle.flush()
        except BaseException:
            handle.close()
            raise
        return writer
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
    try:
        handle.write(json.dumps(header) + "\n")
        handle.flush()
    except BaseException:
        handle.close()
        raise
    return RunWriter(path, handle, header, set(), lock=lock)


def _diff(old: Any, new: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in set(old) | set(new):
            yield from _diff(old.get(key), new.get(key), f"{prefix}{key}.")
    elif old != new:
        yield prefix.rstrip(".")
