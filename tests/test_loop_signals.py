"""`josh loop` never leaves a stage running behind it: killed with `kill -9`, stopped with SIGTERM or Ctrl-C.

The loop runs in its own process, its first stage's command swapped for one that runs until stopped (`josh
serve-mock`, a real josh command: it goes through the same entry point as every stage)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PDEATHSIG is Linux's")

LOOP_WITH_A_STAGE_THAT_RUNS_UNTIL_STOPPED = """
import sys
from josh.loop import run
run.josh_command = lambda args: [sys.executable, "-m", "josh.cli.main", "serve-mock", "--port", "0"]
from josh.cli.main import main
sys.argv = ["josh", "loop", sys.argv[1]]
main()
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def running_loop(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The loop, its stage's child up and serving, and the file holding the loop's stderr."""
    config = tmp_path / "loop.yaml"
    config.write_text("model: m\ncommon: {user: replay}\n")
    log = tmp_path / "loop.log"
    with log.open("wb") as stderr:
        loop = subprocess.Popen(
            [sys.executable, "-c", LOOP_WITH_A_STAGE_THAT_RUNS_UNTIL_STOPPED, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    children: list[int] = []
    try:
        _wait_until(lambda: "josh mock endpoint" in log.read_text(), 120, "the stage's child serves")
        children = _children(loop.pid)
        assert len(children) == 1, log.read_text()
        yield loop, children[0], log
    finally:
        for pid in [loop.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        loop.wait()


def test_a_loop_killed_with_sigkill_takes_its_stage_with_it(
    running_loop: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    loop, child, _ = running_loop
    os.kill(loop.pid, signal.SIGKILL)
    loop.wait()
    _wait_until(lambda: not _alive(child), 10, "the stage's child dies with the loop")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_loop_stops_its_stage_and_says_how_to_continue(
    running_loop: tuple[subprocess.Popen[bytes], int, Path], signum: int
) -> None:
    loop, child, log = running_loop
    os.kill(loop.pid, signum)  # to the loop alone: it must stop its child itself
    assert loop.wait(timeout=30) == 130, log.read_text()
    assert not _alive(child)
    said = log.read_text()
    assert "interrupted: run the same `josh loop " in said and "loop.yaml` again to continue" in said
    assert "Traceback" not in said


def test_a_stage_that_ignores_sigterm_is_killed_after_the_grace_time() -> None:
    from josh.loop.child_process import stop_child

    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    started = time.monotonic()
    stop_child(stubborn, grace_s=0.5)
    assert stubborn.returncode == -signal.SIGKILL and time.monotonic() - started < 10


def test_a_stage_whose_loop_is_already_gone_stops_at_once() -> None:
    """The loop may die between starting its child and the child's request for the signal: the child, adopted
    by then, sees that its parent is not the loop and stops itself."""
    code = (
        "import os; os.environ['JOSH_LOOP_PID'] = str(os.getppid() + 1_000_000)\n"
        "from josh.loop.child_process import die_with_parent; die_with_parent(); print('went on')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGTERM and "went on" not in proc.stdout
