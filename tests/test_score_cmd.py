"""`josh score`: scoring recorded trajectories, error records for bad lines, and the benchmark's ceiling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment
from tests.test_cli_data import run_josh

pytestmark = pytest.mark.data


def test_exact_goal_calls_reach_the_ceiling(tmp_path: Path, toolwoz_env: ToolWOZEnvironment) -> None:
    lines = [
        json.dumps({"task_id": t.task_id, "calls": [g.to_dict() for g in t.goal_calls]})
        for t in toolwoz_env.tasks("test")
    ]
    src = tmp_path / "exact.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary_path = tmp_path / "summary.json"
    proc = run_josh("score", str(src), "--summary-json", str(summary_path))
    assert proc.returncode == 0, proc.stderr
    scored = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(scored) == 450
    assert all(len(r["results"]) == len(r["calls"]) for r in scored)
    summary = json.loads(summary_path.read_text())
    assert summary["perfect"] == 422 and round(summary["average_reward"], 3) == 0.980
    assert "average reward 0.980" in proc.stderr and "422 at 1.0" in proc.stderr
    mul0003 = next(r for r in scored if r["task_id"] == "MUL0003")
    assert mul0003["reward"] == 0.75 and mul0003["results"][2] == []  # "ask" vs "ask restaurant"


def test_bad_lines_become_error_records_and_the_rest_is_scored() -> None:
    good = {
        "task_id": "MUL0003",
        "calls": [
            {
                "name": "book_restaurant",
                "arguments": {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"},
            }
        ],
    }
    stdin = "\n".join(
        [
            "not json",
            json.dumps({"task_id": "NOPE", "calls": []}),
            json.dumps({"calls": []}),
            json.dumps({"task_id": "MUL0003", "calls": "x"}),
            json.dumps(good),
            "",
        ]
    )
    proc = run_josh("score", input=stdin)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("line") for r in records[:4]] == [1, 2, 3, 4]
    assert all("error" in r for r in records[:4])
    assert records[1]["task_id"] == "NOPE" and "unknown ToolWOZ task" in records[1]["error"]
    assert records[4]["reward"] == 0.25 and records[4]["reward_events"] == ["book_restaurant"]
    assert "4 bad lines" in proc.stderr


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_josh("score", str(tmp_path / "nope.jsonl"))
    assert proc.returncode != 0 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


GOOD = json.dumps(
    {
        "task_id": "MUL0003",
        "calls": [
            {
                "name": "book_restaurant",
                "arguments": {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"},
            }
        ],
    }
)


def _score_bytes(data: bytes) -> tuple[subprocess.CompletedProcess[bytes], list[dict[str, Any]]]:
    """Run `josh score` on raw bytes; the output must be UTF-8 JSON lines, one per input line."""
    proc = subprocess.run(
        [sys.executable, "-m", "josh.cli.main", "score"], input=data, capture_output=True, timeout=300
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    return proc, [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]


def _assert_good(record: dict[str, Any]) -> None:
    assert record["task_id"] == "MUL0003" and record["reward"] == 0.25
    assert record["reward_events"] == ["book_restaurant"]


HOSTILE_LINES = [
    ("an array 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ("an object 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deep"),
    (
        "an integer of 5,000 digits",
        b'{"task_id": "MUL0003", "calls": [], "n": ' + b"9" * 5000 + b"}",
        "digits",
    ),
    (
        "a raw 0xff byte",
        b'{"task_id": "MUL0003", "calls": [], "note": "caf\xff"}',
        "not UTF-8 (byte 0xff at byte 49 of the line)",
    ),
    ("binary", bytes(range(256)).replace(b"\n", b""), "not UTF-8 (byte 0x80 at byte 128 of the line)"),
    ("NULs", b"\x00" * 64, "not JSON"),
    ("a lone surrogate in the task id", b'{"task_id": "\\ud800", "calls": []}', "unknown ToolWOZ task"),
]


@pytest.mark.parametrize(("bad", "reason"), [c[1:] for c in HOSTILE_LINES], ids=[c[0] for c in HOSTILE_LINES])
def test_a_hostile_line_gets_an_error_record_and_the_rest_is_scored(bad: bytes, reason: str) -> None:
    good = GOOD.encode()
    proc, records = _score_bytes(b"\n".join([good, bad, good]) + b"\n")
    assert len(records) == 3
    _assert_good(records[0])
    _assert_good(records[2])
    assert records[1]["line"] == 2 and reason in records[1]["error"], records[1]
    assert "scored 2 conversations (1 bad line)" in proc.stderr.decode()


def test_a_lone_surrogate_in_a_value_is_scored_and_written_as_utf8() -> None:
    """Valid JSON a model can send: the call runs (it matches nothing); the echo holds U+FFFD instead."""
    line = '{"task_id": "MUL0003", "calls": [{"name": "search_hotel", "arguments": {"area": "\\ud800"}}]}'
    _, records = _score_bytes(f"{line}\n{GOOD}\n".encode())
    assert records[0]["calls"][0]["arguments"]["area"] == "\ufffd"
    assert records[0]["results"] == [[]] and records[0]["reward"] == 0.0
    _assert_good(records[1])


@pytest.mark.parametrize(
    ("encoding", "bom", "name"),
    [
        ("utf-16", b"", "little-endian"),  # Python writes the BOM itself
        ("utf-16-le", b"", "little-endian"),
        ("utf-16-be", b"\xfe\xff", "big-endian"),
        ("utf-16-be", b"", "big-endian"),
    ],
)
def test_utf16_input_is_decoded_and_said_once(encoding: str, bom: bytes, name: str) -> None:
    text = f"{GOOD}\r\n{GOOD}\r\n\r\n{{not json}}\r\n"
    proc, records = _score_bytes(bom + text.encode(encoding))
    _assert_good(records[0])
    _assert_good(records[1])
    assert records[2] == {"line": 4, "error": records[2]["error"]} and "not JSON" in records[2]["error"]
    stderr = proc.stderr.decode()
    assert stderr.count("UTF-16") == 1 and f"UTF-16 ({name}" in stderr


def test_a_utf8_bom_is_skipped() -> None:
    _, records = _score_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    _assert_good(records[0])


def test_a_truncated_utf16_line_is_an_error_record() -> None:
    data = (GOOD + "\n").encode("utf-16-le") + '{"a"'.encode("utf-16-le") + b"\x00"  # an odd last byte
    _, records = _score_bytes(b"\xff\xfe" + data)
    _assert_good(records[0])
    assert records[1]["line"] == 2 and "not UTF-16" in records[1]["error"]


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xff\xfe"], ids=["empty", "blank lines", "a bare BOM"])
def test_empty_input_says_so(data: bytes, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "josh.cli.main", "score", "--summary-json", str(summary_path)],
        input=data,
        capture_output=True,
        timeout=300,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0 and proc.stdout == b""
    assert "no trajectories to score" in stderr and "0.000" not in stderr
    summary = json.loads(summary_path.read_text())
    assert summary["scored"] == 0 and summary["average_reward"] is None


def test_only_bad_lines_print_no_averages() -> None:
    proc, records = _score_bytes(b"not json\n\xff\n")
    assert [r["line"] for r in records] == [1, 2]
    stderr = proc.stderr.decode()
    assert "no trajectories to score" in stderr and "2 bad lines" in stderr and "0.000" not in stderr


def test_hostile_files_through_the_path_argument(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xff\xfe" + f"{GOOD}\n\x00\n".encode("utf-16-le"))  # a NUL line too
    out = tmp_path / "out.jsonl"
    proc = run_josh("score", str(src), "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    records = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    _assert_good(records[0])
    assert records[1]["line"] == 2 and "error" in records[1]


def test_an_unwritable_out_is_one_clear_error(tmp_path: Path) -> None:
    proc = run_josh("score", "--out", str(tmp_path / "no" / "such" / "dir.jsonl"), input=GOOD + "\n")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr and "No such file or directory" in proc.stderr


def test_the_summary_is_one_line_in_a_pipe() -> None:
    """`josh score x.jsonl > scored.jsonl 2> log`: the summary was cut at 80 columns, before "0.250 (0 at 1.0)"."""
    proc, _ = _score_bytes(f"{GOOD}\n".encode())
    said = [line for line in proc.stderr.decode().splitlines() if line.startswith("scored ")]
    assert len(said) == 1 and said[0].endswith("100% success rate 0.000 (0 at 1.0)"), said


def test_one_of_each_is_said_in_the_singular() -> None:
    proc, _ = _score_bytes(f"{GOOD}\nnot json\n".encode())
    assert "scored 1 conversation (1 bad line): " in proc.stderr.decode()
    proc, _ = _score_bytes(b"not json\n")
    assert "no trajectories to score (1 bad line; see their error records)" in proc.stderr.decode()


def test_dev_null_is_empty_input_and_a_pipe_is_read(tmp_path: Path) -> None:
    """A path that is not a regular file is read (`/dev/null`, `/dev/stdin`, a shell's `<(...)`); a folder
    or a missing path is one clear error."""
    empty = run_josh("score", "/dev/null")
    assert empty.returncode == 0 and empty.stdout == "", empty.stderr
    assert "no trajectories to score (the input has no non-blank line)" in empty.stderr
    piped = run_josh("score", "/dev/stdin", input=GOOD + "\n")
    assert piped.returncode == 0 and json.loads(piped.stdout)["reward"] == 0.25, piped.stderr
    folder = run_josh("score", str(tmp_path))
    assert (
        folder.returncode == 1
        and folder.stderr.strip() == f"error: {tmp_path} is a folder: name a JSONL file of trajectories"
    )
