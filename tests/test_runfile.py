"""Run files are never unreadable: damaged lines cost only their task, torn headers restart, any record writes."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import josh
from josh.errors import JoshError
from josh.runner import open_run, read_run, runfile
from josh.runner.runfile import MAX_LINE_DEPTH, _json_depth, _nesting, encode_line
from josh.types import bounded, clean_text, dumps_line


def ok(task: str, trial: int = 0, **extra: Any) -> dict[str, Any]:
    return {"task_id": task, "trial": trial, "status": "success", "reward": 1.0, **extra}


def start(path: Path, resume: bool = False):
    return open_run(path, config={"a": 1}, config_hash="h1", seed=0, resume=resume, command="test")


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def test_damaged_middle_lines_are_skipped_with_one_warning_and_run_again_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "run.jsonl"
    writer = start(path)
    writer.write(ok("A"))
    writer.close("cancelled")
    with open(path, "ab") as fh:
        fh.write(b'{"task_id": "B", "tri{"task_id": "C", "trial": 0, "status": "success"}\n')  # line 4
        fh.write(b"[1, 2]\n")  # line 5
        fh.write(b'{"trial": 0, "status": "success"}\n')  # line 6
        fh.write(b'{"task_id": "\xff\xfe", "trial": 0}\n')  # line 7
        fh.write(b'{"type": "header", "format_version": 1}\n')  # line 8
        fh.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")  # line 9
        fh.write(b'{"task_id": "E", "trial": ' + b"7" * 5000 + b"}\n")  # line 10
        fh.write(b'{"task_id": "F", "trial": "x"}\n')  # line 11
        fh.write((json.dumps(ok("D")) + "\n").encode())  # line 12
        fh.write(b'{"task_id": 123, "trial": 0}\n')  # line 13
        fh.write(b'{"task_id": "", "trial": 0}\n')  # line 14
    with caplog.at_level(logging.WARNING, logger="josh.runner.runfile"):
        contents = read_run(path)
    assert [r["task_id"] for r in contents.records] == ["A", "D"]
    assert [n for n, _ in contents.damaged] == [4, 5, 6, 7, 8, 9, 10, 11, 13, 14]
    reasons = dict(contents.damaged)
    assert reasons[4] == "not valid JSON (Expecting ':' delimiter)" and reasons[5] == "not a JSON object"
    assert (
        reasons[6] == "no task_id" and reasons[7] == "not UTF-8" and reasons[8].startswith("a second header")
    )
    assert reasons[9] == "nested too deeply to read" and reasons[10].startswith(
        "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion"
    )  # an exception without a `msg`: its text
    assert reasons[11] == "trial is not an integer"
    assert reasons[13] == "task_id is not a string" and reasons[14] == "task_id is empty"
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert str(path) in message and "10 damaged line(s)" in message
    assert all(f"line {n}:" in message for n in (4, 5, 6, 7, 8, 9, 10, 11, 13, 14))
    again = start(path, resume=True)  # B and C were never recorded whole: they are not done
    assert again.done == {("A", 0), ("D", 0)}
    again.write(ok("B"))
    again.close("success")
    assert [r["task_id"] for r in read_run(path).records] == ["A", "D", "B"]


def test_line_separators_inside_strings_do_not_split_a_record(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = start(path)
    text = "a\u2028b\u2029c\x85d\x1ce\x0bf\rg"  # str.splitlines() splits at every one of these
    writer.write(ok("A", note=text))
    writer.close("success")
    contents = read_run(path)
    assert contents.damaged == [] and contents.records[0]["note"] == text


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize(
    "torn", [b'{"type": "hea', b'{"type": "header", "format_version": 1, "josh_ver', b"{"]
)
def test_a_file_holding_only_a_torn_header_starts_over(
    tmp_path: Path, resume: bool, torn: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(torn)
    with pytest.raises(JoshError, match="holds only a torn header"):
        read_run(path)
    with caplog.at_level(logging.WARNING, logger="josh.runner.runfile"):
        writer = start(path, resume=resume)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} holds only a torn header (a run killed as it started); starting it over"
    ]
    assert writer.done == set()
    writer.write(ok("A"))
    writer.close("success")
    contents = read_run(path)
    assert contents.header["config"] == {"a": 1} and [r["task_id"] for r in contents.records] == ["A"]


@pytest.mark.parametrize("resume", [False, True])
def test_an_empty_file_is_started(tmp_path: Path, resume: bool) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"")
    start(path, resume=resume).close("success")
    assert read_run(path).header["config_hash"] == "h1"


def written(path: Path) -> Path:
    writer = start(path)
    writer.write(ok("A"))
    writer.write(ok("B", note="é ☎ \U0001f600"))
    writer.close("success")
    return path


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_a_run_file_with_a_byte_order_mark_or_in_utf_16_reads_as_the_same_run(
    tmp_path: Path, encoding: str
) -> None:
    plain = written(tmp_path / "plain.jsonl")
    path = tmp_path / "odd.jsonl"
    path.write_bytes(plain.read_text(encoding="utf-8").encode(encoding))
    assert read_run(path) == read_run(plain)
    with open(path, "ab") as fh:  # a torn last line, in the file's encoding
        fh.write('{"task_id": "C"'.encode(encoding.replace("-sig", "")).removeprefix(b"\xff\xfe"))
    contents = read_run(path)
    assert [r["task_id"] for r in contents.records] == ["A", "B"] and contents.damaged[0][1].startswith(
        "torn"
    )


def test_a_run_file_with_a_utf_8_byte_order_mark_resumes_and_stays_utf_8(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + written(tmp_path / "plain.jsonl").read_bytes() + b'{"task_id": "C"')
    again = start(path, resume=True)  # the torn line is cut; new lines are UTF-8, as the file is
    assert again.done == {("A", 0), ("B", 0)}
    again.write(ok("C"))
    again.close("success")
    text = path.read_bytes().decode("utf-8-sig")  # the whole file: one encoding
    assert [r["task_id"] for r in read_run(path).records] == ["A", "B", "C"] and text.count('"C"') == 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_run_file_in_utf_16_is_never_appended_to(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(written(tmp_path / "plain.jsonl").read_text(encoding="utf-8").encode(encoding))
    before = path.read_bytes()
    for resume in (True, False):
        with pytest.raises(JoshError) as info:
            start(path, resume=resume)
        assert str(info.value).startswith(f"{path} is a run file in UTF-16 (")
        assert "cannot continue it; convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8" in str(info.value)
    assert path.read_bytes() == before


BINARY = {
    "random": random.Random(7).randbytes(3000),
    "random, no newline": random.Random(7).randbytes(3000).replace(b"\n", b""),
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01",
    "utf-16, not a header": '{"type": "record"}\n'.encode("utf-16"),
    "a json array": b"[1, 2, 3]",
}


@pytest.mark.parametrize("name", list(BINARY))
def test_a_file_that_is_not_a_run_is_named_so_and_never_overwritten(tmp_path: Path, name: str) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(BINARY[name])
    with pytest.raises(JoshError, match=r"run\.jsonl is not a josh run file"):
        read_run(path)
    for resume in (False, True):
        with pytest.raises(JoshError) as info:
            start(path, resume=resume)
        assert str(info.value).startswith(f"{path} ")
        assert "not a josh run file" in str(info.value) or "already exists" in str(info.value)
    assert path.read_bytes() == BINARY[name]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_reading_any_bytes_raises_only_a_josh_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any.jsonl"
    path.write_bytes(data)
    with contextlib.suppress(JoshError):
        read_run(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["task_id", "trial", "type", "status", "wall_s"]) | st.text(max_size=3),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
LINES = st.lists(st.binary(max_size=30) | JSON_VALUES.map(lambda v: json.dumps(v).encode()), max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(LINES)
def test_any_lines_after_a_header_read_without_raising(tmp_path: Path, lines: list[bytes]) -> None:
    fresh = tmp_path / "fresh.jsonl"  # the same tmp_path for every example: make the header once
    if not fresh.exists():
        start(fresh).close("success")
    path = tmp_path / "any.jsonl"
    path.write_bytes(fresh.read_bytes() + b"\n".join(lines))
    contents = read_run(path)
    assert all(isinstance(key, str) and isinstance(trial, int) for key, trial in contents.keyed())
    assert contents.previous_wall_s == contents.previous_wall_s  # a number, never NaN
    start(path, resume=True).close("success")


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"x": value}
    return value


HOSTILE = {
    "lone surrogate": ok(
        "S", internal=[{"tool_calls": [{"name": "search", "arguments": {"q": "a\ud800b"}}]}]
    ),
    "500 deep": ok("S", internal=[{"tool_calls": [{"arguments": nested(500)}]}]),
    "5000 deep": ok("S", internal=[{"tool_calls": [{"arguments": nested(5000)}]}]),
    "not json": ok("S", obj=object(), tags={3}, raw=b"\xff", keys={(1, 2): "v"}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_any_record_is_written_read_back_and_resumed(tmp_path: Path, name: str) -> None:
    path = tmp_path / "run.jsonl"
    writer = start(path)
    writer.write(HOSTILE[name])
    writer.write(ok("N"))
    writer.close("cancelled")
    for line in path.read_bytes().split(b"\n")[:-1]:
        json.loads(line.decode("utf-8"))
    contents = read_run(path)
    assert contents.damaged == [] and set(contents.keyed()) == {("S", 0), ("N", 0)}
    saved = contents.records[0]
    if name == "lone surrogate":
        assert saved["internal"][0]["tool_calls"][0]["arguments"] == {"q": "a\ufffdb"}
    elif name == "not json":
        assert saved["tags"] == [3] and saved["keys"] == {"[1, 2]": "v"} and saved["raw"] == "b'\\xff'"
    else:
        assert depth(saved) <= MAX_LINE_DEPTH
        assert "cut: nested deeper than" in json.dumps(saved)
    again = start(path, resume=True)
    assert again.done == {("S", 0), ("N", 0)}
    again.write(HOSTILE[name] | {"task_id": "T"})
    again.close("success")
    assert set(read_run(path).keyed()) == {("S", 0), ("N", 0), ("T", 0)}


def test_status_lines_carry_extra_fields_and_wall_time_adds_up_over_resumes(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = start(path)
    writer.write(ok("A"))
    writer.close("cancelled", wall_s=12.5, errors=1, records=3)
    again = start(path, resume=True)
    assert read_run(path).previous_wall_s == 12.5
    again.write(ok("B"))
    again.close("success", wall_s=7.25)
    contents = read_run(path)
    first, resumed, last = contents.statuses
    assert (first["status"], first["wall_s"], first["errors"], first["records"]) == ("cancelled", 12.5, 1, 3)
    assert resumed["status"] == "resumed" and "wall_s" not in resumed
    assert (last["status"], last["wall_s"], last["records"]) == ("success", 7.25, 2)
    assert contents.previous_wall_s == 19.75


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_the_header_and_status_lines_say_what_ran(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "still" / "run.jsonl"  # parent folders are created
    writer = open_run(path, config={"a": 1}, config_hash="h1", seed=7, resume=False, command="eval test")
    assert writer.path == path
    writer.close("cancelled", wall_s=1.5, type="record")  # extra fields cannot change the line's type
    header, status = (json.loads(line) for line in path.read_text().splitlines())
    assert writer.header == header
    git = dict(git_commit=header.pop("git_commit"), dirty=header.pop("dirty"))
    assert ISO.match(header.pop("started_at"))
    assert header == {"type": "header", "format_version": 1, "josh_version": josh.__version__,
                      "command": "eval test", "config_hash": "h1", "config": {"a": 1}, "seed": 7,
                      "status": "started"}  # fmt: skip
    checkout = Path(runfile.__file__).resolve().parents[3]
    if (checkout / ".git").exists():  # a git checkout: its HEAD, and whether it has local changes
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        assert git["git_commit"] == head.stdout.strip() and isinstance(git["dirty"], bool)
    else:  # e.g. an installed copy
        assert git == {"git_commit": None, "dirty": None}
    assert ISO.match(status.pop("at"))
    assert status == {"type": "status", "status": "cancelled", "records": 0, "wall_s": 1.5}


def test_resume_knows_which_keys_are_done_and_which_ended_in_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = start(path)
    writer.write(ok("A"))
    writer.write({"task_id": "B", "trial": 1, "status": "error", "reward": None})
    writer.write({"task_id": "C", "status": "success", "reward": 1.0})  # no trial: trial 0
    assert writer.errored == {("B", 1)} and writer.done == {("A", 0), ("B", 1), ("C", 0)}
    writer.close("success")
    assert read_run(path).statuses[-1]["records"] == 3  # the keys done, when not given
    again = start(path, resume=True)
    assert again.done == {("A", 0), ("B", 1), ("C", 0)} and again.errored == {("B", 1)}
    assert again.path == path and again.header["config_hash"] == "h1"
    again.write(ok("B", trial=1))  # retried: no longer an error
    again.write({"task_id": "A", "trial": 0, "status": "error", "reward": None})  # now A's latest is one
    assert again.errored == {("A", 0)}
    again.close("success")
    resumed = [s for s in read_run(path).statuses if s["status"] == "resumed"]
    assert len(resumed) == 1 and ISO.match(resumed[0]["at"])
    assert read_run(path).keyed()[("C", 0)]["reward"] == 1.0


def test_a_different_config_names_the_nested_keys_that_differ(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    open_run(path, config={"a": {"b": 1, "c": 2}, "d": 1}, config_hash="h1", seed=0, resume=False,
             command="test").close("success")  # fmt: skip
    with pytest.raises(JoshError) as info:
        open_run(path, config={"a": {"b": 1, "c": 3}, "e": 2}, config_hash="h2", seed=0, resume=True,
                 command="test")  # fmt: skip
    # a.c changed, d is only in the old config, e only in the new one
    assert "(hash h1 vs h2; differs in: a.c, d, e)" in str(info.value)
    with pytest.raises(JoshError, match="differs in: unknown"):  # same options, another hash
        open_run(path, config={"a": {"b": 1, "c": 2}, "d": 1}, config_hash="h3", seed=0, resume=True,
                 command="test")  # fmt: skip


def test_a_torn_last_line_after_two_records_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = start(path)
    writer.close("success")
    with open(path, "a") as fh:
        fh.write(json.dumps(ok("A")) + "\n\n" + json.dumps(ok("B")) + "\n" + '{"task_id": "C"')
    contents = read_run(path)
    # the blank line is skipped, not the end; the 15 bytes after the last newline are the torn line
    assert [r["task_id"] for r in contents.records] == ["A", "B"] and contents.torn_bytes == 15
    assert contents.damaged == [(6, "torn (15 bytes without a newline: a run killed while writing it)")]
    again = start(path, resume=True)
    again.close("success")
    assert read_run(path).torn_bytes == 0 and '"C"' not in path.read_text()


@pytest.mark.parametrize(("damaged", "more"), [(10, ""), (11, "; and 1 more"), (12, "; and 2 more")])
def test_more_than_ten_damaged_lines_are_summed_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: int, more: str
) -> None:
    path = tmp_path / "run.jsonl"
    start(path).close("success")
    with open(path, "a") as fh:
        fh.write("[1]\n" * damaged)  # from line 3 on
    with caplog.at_level(logging.WARNING, logger="josh.runner.runfile"):
        contents = read_run(path)
        read_run(path, resuming=True)
    assert [n for n, _ in contents.damaged] == list(range(3, 3 + damaged))
    shown = "; ".join(f"line {n}: not a JSON object" for n in range(3, 13))  # the first ten
    # a reader (view, export, report) promises nothing; a run being resumed says what becomes of the tasks
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: skipped {damaged} damaged line(s) ({shown}{more})",
        f"{path}: skipped {damaged} damaged line(s) ({shown}{more}); their tasks count as not done and run "
        "again on --resume",
    ]


def test_a_header_line_longer_than_one_read_is_found(tmp_path: Path) -> None:
    # The first line is read 64 KiB at a time: make it exactly 65,536 bytes, so its newline is the first
    # byte of the second read.
    path = tmp_path / "run.jsonl"
    header = {"type": "header", "format_version": 1, "config_hash": "h1", "config": {"pad": ""}}
    header["config"]["pad"] = "x" * (65_536 - len(json.dumps(header)))
    line = json.dumps(header)
    assert len(line) == 65_536
    path.write_text(line + "\n")
    writer = start(path, resume=True)
    assert writer.done == set()
    writer.close("success")
    contents = read_run(path)  # resumed: the header kept, not a torn one started over
    assert path.read_text().split("\n", 1)[0] == line
    assert [s["status"] for s in contents.statuses] == ["resumed", "success"]


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert _json_depth("") == 0 and _json_depth("1") == 0 and _json_depth("[]") == 1
    assert _json_depth('{"a": [[1]], "s": "[[[[", "t": "\\"{{"}') == 3
    assert _json_depth("[][[[]]]") == 3  # the deepest point, wherever it comes


def _line_by_its_text(obj: Any) -> str:
    """`encode_line` as it was: the depth read from the line's text every time (the slow, sure way)."""
    line = dumps_line(obj)
    if _json_depth(line) > MAX_LINE_DEPTH:
        line = dumps_line(bounded(obj, MAX_LINE_DEPTH))
    return line + "\n"


def _wrapped(value: Any, levels: int, kinds: list[str]) -> Any:
    for level in range(levels):
        kind = kinds[level % len(kinds)]
        value = {"k": value} if kind == "dict" else (value,) if kind == "tuple" else [value]
    return value


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    | st.tuples(inner, inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    JSON_VALUES,
    st.integers(0, MAX_LINE_DEPTH + 3),
    st.lists(st.sampled_from(["dict", "list", "tuple"]), min_size=1, max_size=3),
    st.sampled_from(["plain", "dict subclass", "list subclass", "object"]),
)
def test_encode_line_writes_what_reading_the_depth_from_the_text_writes(
    leaf: Any, levels: int, kinds: list[str], odd: str
) -> None:
    """`encode_line` reads the depth from the object first (quicker); what it writes must not change: the
    same line as reading it from the text, at every depth around the cut, and with containers whose JSON only
    the encoder knows (subclasses) or that it writes as text."""

    class Dict(dict):  # type: ignore[type-arg]
        pass

    class List(list):  # type: ignore[type-arg]
        pass

    extra = {"plain": 1, "dict subclass": Dict(a=[1]), "list subclass": List([[2]]), "object": object()}[odd]
    value = _wrapped([leaf, extra], levels, kinds)
    record = {"task_id": "A", "x": value}
    line = encode_line(record)
    assert line == _line_by_its_text(record)
    assert depth(json.loads(line)) <= MAX_LINE_DEPTH


def test_nesting_counts_levels_and_leaves_subclasses_to_the_encoder() -> None:
    assert _nesting(1, 10) == 0 and _nesting("[[[", 10) == 0 and _nesting([], 10) == 1
    assert _nesting({"a": [1, {"b": ()}]}, 10) == 4
    assert _nesting([[[[[]]]]], 2) == 3  # stops one past the limit: deeper is all the caller needs to know
    assert _nesting({"a": [object(), {1, 2}]}, 10) == 2  # a set is written as text

    class Dict(dict):  # type: ignore[type-arg]
        pass

    assert _nesting([1, {"a": Dict()}], 10) is None


@given(st.text(alphabet=st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=30))  # lone ones
def test_clean_text_replaces_every_surrogate_and_only_them(text: str) -> None:
    cleaned = clean_text(text)
    assert cleaned == re.sub("[\ud800-\udfff]", "\ufffd", text)
    cleaned.encode("utf-8")


def test_a_record_exactly_max_depth_deep_is_kept_and_one_deeper_is_cut() -> None:
    def record(lists: int) -> dict[str, Any]:
        value: Any = 1
        for _ in range(lists):
            value = [value]
        return {"task_id": "A", "x": value}  # depth: the record's object + `lists` arrays

    kept = record(MAX_LINE_DEPTH - 1)
    assert json.loads(encode_line(kept)) == kept
    cut = json.loads(encode_line(record(MAX_LINE_DEPTH)))
    assert depth(cut) == MAX_LINE_DEPTH and "cut: nested deeper than" in json.dumps(cut)
    text = {"task_id": "A", "s": "[" * 500}  # 500 brackets, all inside a string: not cut
    assert json.loads(encode_line(text)) == text


def test_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(JoshError, match=f"^{re.escape(str(missing))} does not exist$"):
        read_run(missing)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(JoshError, match=f"^{re.escape(str(empty))} is empty: not a josh run file yet$"):
        read_run(empty)
    future = tmp_path / "future.jsonl"
    future.write_text('{"type": "header", "format_version": 2}\n')
    with pytest.raises(JoshError, match="has run-file format 2; this josh reads 1$"):
        read_run(future)


def test_config_diffs_of_odd_shapes_and_a_header_without_config(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    open_run(path, config={"a": {"b": 1}}, config_hash="h1", seed=0, resume=False, command="t").close(
        "success"
    )
    with pytest.raises(JoshError, match=r"differs in: a\)"):  # an object became a number
        open_run(path, config={"a": 5}, config_hash="h2", seed=0, resume=True, command="t")
    bare = tmp_path / "bare.jsonl"
    bare.write_text('{"type": "header", "format_version": 1, "config_hash": "h1"}\n')
    with pytest.raises(JoshError, match=r"differs in: a, b\)"):  # no config saved: every key differs
        open_run(bare, config={"a": 1, "b": 2}, config_hash="h2", seed=0, resume=True, command="t")


def test_a_file_that_starts_with_a_newline_is_not_a_run(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("\n" + json.dumps({"type": "header", "format_version": 1}) + "\n")
    with pytest.raises(JoshError, match="is not a josh run file"):  # an empty first line, not an empty file
        read_run(path)


def test_a_run_writes_one_record_per_key_and_drops_a_second(tmp_path: Path) -> None:
    """A retried Ray task may send its tree again: the writer keeps the first and drops the second; a key an
    earlier run of the file recorded (an error, under --resume --retry-errors) is written again."""
    path = tmp_path / "run.jsonl"
    writer = start(path)
    assert writer.write({**ok("A"), "status": "error", "reward": None}) is True
    assert writer.write(ok("A")) is False  # the same key again in this run: dropped
    assert writer.write(ok("A", trial=1)) is True
    writer.close("success")
    assert [(r["task_id"], r["trial"], r["status"]) for r in read_run(path).records] == [
        ("A", 0, "error"), ("A", 1, "success"),
    ]  # fmt: skip
    again = start(path, resume=True)
    assert ("A", 0) in again.errored and again.write(ok("A")) is True
    again.close("success")
    assert read_run(path).keyed()[("A", 0)]["status"] == "success"
