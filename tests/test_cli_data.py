"""`josh data` and the cache: fetch errors, atomic builds, corruption, and the listed tasks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment, paths
from josh.envs.toolwoz.cache_lock import exclusive


def run_josh(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "josh.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=timeout,
    )


def test_fetch_offline_is_one_clear_error(tmp_path: Path) -> None:
    offline = {
        "JOSH_CACHE": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "",
    }
    proc = run_josh("data", "fetch", env=offline)
    assert proc.returncode == 1
    assert "error: pip could not download josh-train==0.1.4" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.suffix == ".sqlite" for p in tmp_path.rglob("*"))


def test_fetch_rejects_a_wrong_checksum(tmp_path: Path) -> None:
    fake = tmp_path / "josh_train-0.1.4-py3-none-any.whl"
    fake.write_bytes(b"not the official wheel")
    proc = run_josh("data", "fetch", "--wheel", str(fake), env={"JOSH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 1
    assert f"expected {paths.WHEEL_SHA256}" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def private_cache(tmp_path: Path, toolwoz_env: ToolWOZEnvironment, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built cache in a temporary JOSH_CACHE (no network needed to rebuild it)."""
    source = paths.toolwoz_dir()
    monkeypatch.setenv("JOSH_CACHE", str(tmp_path))
    target = paths.toolwoz_dir()
    target.mkdir(parents=True)
    for name in (paths.WHEEL_NAME, paths.database_path().name, paths.digest_path().name):
        shutil.copy2(source / name, target / name)
    return target


@pytest.mark.data
@pytest.mark.slow
def test_a_corrupt_cache_is_detected_and_rebuilt(private_cache: Path) -> None:
    db = paths.database_path()
    with open(db, "r+b") as fh:
        fh.seek(db.stat().st_size // 2)
        fh.write(b"\x00garbage\x00" * 64)
    messages: list[str] = []
    env = ToolWOZEnvironment.load(messages.append)
    assert any("corrupt" in m for m in messages)
    assert len(env.task_ids("test")) == 450
    assert env.session("MUL0003").call("search_hotel", {"type": "guesthouse"})[0]["name"] == "warkworth house"


@pytest.mark.data
@pytest.mark.slow
def test_a_killed_build_leaves_no_half_cache(private_cache: Path) -> None:
    before = paths.database_path().read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", "data", "fetch", "--force"],
        env={**os.environ, "JOSH_CACHE": str(private_cache.parent)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(private_cache.glob(".*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed mid-write"
    proc.send_signal(signal.SIGKILL)  # mid-write of the new database
    proc.wait()
    assert list(private_cache.glob(".*.tmp"))
    assert paths.database_path().read_bytes() == before  # the live cache was never touched
    assert len(ToolWOZEnvironment.load()) == 7849
    assert run_josh("data", "fetch", "--force", env={"JOSH_CACHE": str(private_cache.parent)}).returncode == 0
    assert not list(private_cache.glob(".*.tmp"))  # the next build clears what the killed one left


@pytest.mark.data
@pytest.mark.slow
def test_concurrent_builds_wait_for_each_other(private_cache: Path, tmp_path: Path) -> None:
    """A second `data fetch --force` waits for the first's lock instead of deleting its temporary file."""
    env = {**os.environ, "JOSH_CACHE": str(private_cache.parent)}
    cmd = [sys.executable, "-m", "josh.cli.main", "data", "fetch", "--force"]
    first_log = tmp_path / "first.log"
    with open(first_log, "wb") as log:
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    second: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 120
        while not list(private_cache.glob(".*.tmp")) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first build finished before the second could start"
        # Frozen mid-write, the first build holds its lock and its half-written file for as long as needed.
        first.send_signal(signal.SIGSTOP)
        half_written = list(private_cache.glob(".*.tmp"))
        second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert second.stderr is not None
        said = ""
        for line in second.stderr:  # until it says it waits, or ends without waiting
            said += line
            if "wait" in line:
                break
        assert "another josh is writing the ToolWOZ cache" in said, said
        assert all(p.exists() for p in half_written), "the second build deleted the first's temporary file"
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, first_log.read_text()
        rest = second.communicate(timeout=300)[1]
        assert second.returncode == 0, said + rest
        assert "built the ToolWOZ cache meanwhile" in rest  # it found the first's fresh cache
        assert "Traceback" not in first_log.read_text() + said + rest
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
    assert not list(private_cache.glob(".*.tmp"))
    assert len(ToolWOZEnvironment.load()) == 7849


@pytest.mark.data
@pytest.mark.slow
def test_copying_a_wheel_waits_for_the_cache_lock(private_cache: Path) -> None:
    """`data fetch --wheel` writes into the cache too: it waits while another josh holds the write lock."""
    wheel = paths.wheel_path()
    before = wheel.stat().st_mtime_ns
    with exclusive():  # this test plays the other josh
        proc = subprocess.Popen(
            [sys.executable, "-m", "josh.cli.main", "data", "fetch", "--wheel", str(wheel)],
            env={**os.environ, "JOSH_CACHE": str(private_cache.parent)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            said = ""
            for line in proc.stderr:
                said += line
                if "wait" in line:
                    break
            assert "another josh is writing the ToolWOZ cache" in said, said
            assert wheel.stat().st_mtime_ns == before
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0 and "Traceback" not in rest, said + rest
    assert not list(private_cache.glob(".*.tmp"))


@pytest.mark.data
def test_data_info_shows_the_splits() -> None:
    proc = run_josh("data", "info")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("│")[0].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 3}
    cells = [c.strip() for c in lines["tasks"].split("│")[1:]]
    assert cells == ["450", "805", "793", "6,251", "926", "7,849"]
    assert "search_restaurant" in lines and "book_train" in lines


@pytest.mark.data
def test_data_tasks_prints_the_documented_jsonl() -> None:
    proc = run_josh("data", "tasks", "--split", "test")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 450
    first = rows[0]
    assert list(first)[:3] == ["task_id", "split", "goal_calls"]
    assert first["task_id"] == "MUL0003" and first["split"] == "test"
    assert first["goal_calls"][0] == {
        "name": "search_hotel",
        "arguments": {"parking": "yes", "pricerange": "cheap", "internet": "yes", "type": "guesthouse"},
    }
    assert all(set(g) == {"name", "arguments"} for r in rows for g in r["goal_calls"])
    assert all(
        v not in ("", "dontcare") for r in rows for g in r["goal_calls"] for v in g["arguments"].values()
    )
    bad = run_josh("data", "tasks", "--split", "dev")
    assert bad.returncode == 1 and "unknown split" in bad.stderr


@pytest.mark.data
def test_the_paper_train_split_is_the_papers_926_harvested_tasks(tmp_path: Path) -> None:
    """`--split paper_train`: the ids of the wheel's training_fnames.json, the same tasks as the 926 trees it
    releases; all train tasks, 388 of them among the first 1,000 of `train`."""
    import zipfile

    from josh.envs.toolwoz import ToolWOZEnvironment, paths
    from josh.envs.toolwoz.paper_split import read_paper_train_ids
    from josh.errors import DataError
    from josh.export.reference_trees import read_reference_trees

    env = ToolWOZEnvironment.load()
    ids = env.task_ids("paper_train")
    assert len(ids) == 926 and ids == sorted(ids) and set(ids) <= set(env.task_ids("train"))
    assert len(set(ids) & set(env.task_ids("train")[:1000])) == 388
    released = read_reference_trees(paths.wheel_path(), system_prompt="")
    assert [t.record.task_id for t in released.trees] == ids
    proc = run_josh("data", "tasks", "--split", "paper_train")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["task_id"] for line in proc.stdout.splitlines()] == ids
    broken = tmp_path / "broken.whl"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("josh_train/training_fnames.json", "{}")
    with pytest.raises(DataError, match="not a list of task file names"):
        read_paper_train_ids(broken)
    with pytest.raises(DataError, match="josh data fetch --force"):
        read_paper_train_ids(tmp_path / "missing.whl")
