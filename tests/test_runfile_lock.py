"""One writer per run file: an exclusive lock held from `open_run` to `RunWriter.close`, across processes."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from josh.errors import JoshError
from josh.runner import RunLockedError, open_run, read_run, run_lock
from josh.runner import lock as lock_module
from josh.runner.lock import RunLock, lock_path

# Opens the run (as `josh eval toolwoz --resume` would), says so, and holds it until stdin has a line.
HOLD = """
import sys
from pathlib import Path
from josh.runner import open_run
writer = open_run(Path(sys.argv[1]), config={}, config_hash="h", seed=0, resume=True, command="eval toolwoz")
print("locked", flush=True)
sys.stdin.readline()
writer.write({"task_id": "A", "trial": 0, "status": "success", "reward": 1.0})
writer.close("success")
"""
# Tries to open the same run; prints the error and exits 3, or writes a record and exits 0.
TRY = """
import sys
from pathlib import Path
from josh.errors import JoshError
from josh.runner import open_run
try:
    writer = open_run(Path(sys.argv[1]), config={}, config_hash="h", seed=0, resume=True, command="eval toolwoz")
except JoshError as exc:
    print(exc)
    sys.exit(3)
writer.write({"task_id": "B", "trial": 0, "status": "success", "reward": 1.0})
writer.close("success")
"""


def start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"  # blocks until the holder has the lock
    return proc


def open_again(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TRY, str(path)], capture_output=True, text=True, timeout=60)


def test_a_second_process_is_refused_with_the_holders_pid_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    holder = start_holder(path)
    try:
        before = path.read_bytes()
        second = open_again(path)
        assert second.returncode == 3, second.stdout + second.stderr
        assert second.stdout.strip().startswith(
            f"{path} is being written by another josh run "
            f"(pid {holder.pid} on {socket.gethostname()}, `eval toolwoz`, since 20"
        )
        assert second.stdout.strip().endswith("); wait for it to finish or choose another --out")
        assert "Traceback" not in second.stderr
        assert path.read_bytes() == before  # one header line, nothing from the loser
        assert json.loads(lock_path(path).read_text())["pid"] == holder.pid
    finally:
        holder.communicate("go\n", timeout=60)
    assert holder.returncode == 0
    # the holder is gone: the same open now succeeds, and the file holds each task once
    assert open_again(path).returncode == 0
    contents = read_run(path)
    assert [r["task_id"] for r in contents.records] == ["A", "B"]
    assert [s["status"] for s in contents.statuses] == ["success", "resumed", "success"]
    assert contents.damaged == [] and lock_path(path).exists()  # the lock file is never deleted


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    holder = start_holder(path)
    holder.kill()  # SIGKILL: no chance to release anything
    holder.wait(timeout=60)
    assert json.loads(lock_path(path).read_text())["pid"] == holder.pid  # its stale note is still there
    writer = open_run(path, config={}, config_hash="h", seed=0, resume=True, command="test")
    assert json.loads(lock_path(path).read_text())["command"] == "test"
    writer.close("success")
    assert [s["status"] for s in read_run(path).statuses] == ["resumed", "success"]


def test_the_lock_is_held_until_close_and_released_when_open_run_fails(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    open_run(path, config={"a": 1}, config_hash="h1", seed=0, resume=False, command="first").close("success")
    with pytest.raises(JoshError, match="differs in: a"):
        open_run(path, config={"a": 2}, config_hash="h2", seed=0, resume=True, command="second")
    with pytest.raises(JoshError, match="already exists"):
        open_run(path, config={"a": 1}, config_hash="h1", seed=0, resume=False, command="second")
    writer = open_run(path, config={"a": 1}, config_hash="h1", seed=0, resume=True, command="third")
    with pytest.raises(RunLockedError, match=r"`third`"):  # a second open in the same process too
        open_run(path, config={"a": 1}, config_hash="h1", seed=0, resume=True, command="fourth")
    with pytest.raises(RunLockedError), run_lock(path, command="reader"):
        pass
    writer.close("success")
    writer.close("success")  # a second close does nothing
    with run_lock(path, command="reader") as lock:
        assert lock.held
    assert [s["status"] for s in read_run(path).statuses] == ["success", "resumed", "success"]


def test_a_second_open_in_this_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    first = RunLock.acquire(path, command="eval first")
    with pytest.raises(RunLockedError) as info:
        RunLock.acquire(path, command="eval second")
    message = str(info.value)
    pid_host = f"pid {os.getpid()} on {socket.gethostname()}, `eval first`, since "
    assert message.startswith(f"{path} is being written by another josh run ({pid_host}")
    assert message.endswith("); wait for it to finish or choose another --out")
    since = message.split("since ")[1].split(")")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", since)
    assert first.held and first.path == path
    first.release()
    assert not first.held and lock_path(path).read_bytes() == b""  # the note is cleared, the file stays
    first.release()  # a second release does nothing
    with RunLock.acquire(path, command="eval third") as third:
        assert third.held


@pytest.mark.parametrize(("note", "described"), [
    (b"", "holder unknown"),  # locked, note not written yet
    (b"[1, 2]\n", "holder unknown"),  # not an object
    (b'{"pid": 5}\n', "pid 5 on ?, `?`, since ?"),
    (b'{"host": "h", "command": "c", "since": "s"}\n', "pid ? on h, `c`, since s"),
])  # fmt: skip
def test_the_holder_is_described_from_whatever_note_it_left(
    tmp_path: Path, note: bytes, described: str
) -> None:
    path = tmp_path / "run.jsonl"
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, note)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another holder, as a process would hold it
        with pytest.raises(RunLockedError, match=re.escape(f"({described});")):
            RunLock.acquire(path, command="eval")
    finally:
        os.close(fd)


def test_a_file_system_without_locks_runs_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int) -> bool:
        raise OSError("locks not supported")

    monkeypatch.setattr(lock_module, "_try_lock", no_locks)
    path = tmp_path / "run.jsonl"
    with caplog.at_level(logging.WARNING, logger="josh.runner.lock"):
        held = RunLock.acquire(path, command="eval")
    assert held.held
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot lock {lock_path(path)} (locks not supported); make sure no other josh run writes {path}"
    ]
    held.release()


def test_the_lock_file_is_made_readable_and_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    with RunLock.acquire(tmp_path / "run.jsonl", command="eval"):
        assert os.stat(lock_path(tmp_path / "run.jsonl")).st_mode & 0o777 == 0o666 & ~umask
    missing = tmp_path / "no" / "run.jsonl"
    with pytest.raises(JoshError) as info:
        RunLock.acquire(missing, command="eval")
    assert str(info.value) == f"cannot create the lock file {lock_path(missing)}: No such file or directory"
