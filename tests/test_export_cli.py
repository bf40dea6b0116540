"""`josh export sft|kto|dpo` end to end: real dry-run trees and the paper's released trees, and bad input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from josh.envs.toolwoz.fetch import download_wheel
from josh.export import REFERENCE_TREES_MEMBER, export_examples, read_reference_trees, read_trees
from tests.test_cli_data import run_josh

pytestmark = pytest.mark.data

KEYS = {
    "sft": {"messages", "tools"},
    "kto": {"prompt", "completion", "label", "tools"},
    "dpo": {"prompt", "chosen", "rejected", "tools"},
}
STAND_INS = {"ERROR: NO COMMAND FOUND", "ERROR: INVALID COMMAND TYPE", "Error: Agent ran out of retries."}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trees_of(path: Path) -> list[dict[str, Any]]:
    return [r for r in lines(path)[1:] if r.get("type") != "status"]


@pytest.mark.parametrize("agent", ["react", "fc"])
def test_dry_run_trees_export_to_the_three_kinds(
    dry_run_trees: dict[str, Path], tmp_path: Path, agent: str
) -> None:
    trees = trees_of(dry_run_trees[agent])
    written = {}
    for kind in ("sft", "kto", "dpo"):
        proc = run_josh("export", kind, str(dry_run_trees[agent]), "-o", str(tmp_path / kind))
        assert proc.returncode == 0, proc.stderr
        assert f"josh export {kind}" in proc.stderr and "trees read / used" in proc.stderr
        examples = lines(tmp_path / kind / "train.jsonl")
        summary = json.loads((tmp_path / kind / "summary.json").read_text())
        assert summary["examples"] == len(examples) > 0 and summary["trees"]["read"] == len(trees)
        assert summary["source"] == {"trees": [str(dry_run_trees[agent])]}
        assert all(set(e) == KEYS[kind] for e in examples)
        written[kind] = examples
    # SFT: one conversation per tree at reward 1.0, the agent's system prompt first, ending on its reply
    full = [t for t in trees if t["reward"] == 1.0]
    assert len(written["sft"]) == len(full)
    for example, tree in zip(written["sft"], full, strict=True):
        assert example["messages"][0] == {"role": "system", "content": tree["system_prompt"]}
        assert example["messages"][1] == tree["nodes"][0]["messages"][0] | {"role": "user"}
        assert example["messages"][-1]["role"] == "assistant" and example["tools"] == tree["tools"]
        for message in example["messages"]:
            for call in message.get("tool_calls", []):  # OpenAI form: arguments are JSON text
                assert json.loads(call["function"]["arguments"]) is not None and call["type"] == "function"
    # KTO: one example per assistant message of every node, less the agent's stand-ins
    replies = [m for t in trees for n in t["nodes"] for m in n["messages"] if m["role"] == "assistant"]
    assert len(written["kto"]) == len([m for m in replies if m["content"] not in STAND_INS])
    for example in written["kto"]:
        assert example["completion"][0]["role"] == "assistant" and example["prompt"][0]["role"] == "system"
    for example in written["dpo"]:
        assert example["chosen"] != example["rejected"]


def test_malformed_tool_calls_are_never_trained_on(dry_run_trees: dict[str, Path], tmp_path: Path) -> None:
    """With 20% malformed tool calls: SFT holds none (nor an error result answering one); in KTO every
    malformed call is undesirable, even on a successful path."""
    fc = str(dry_run_trees["fc"])
    assert run_josh("export", "sft", fc, "-o", str(tmp_path / "sft")).returncode == 0
    for example in lines(tmp_path / "sft" / "train.jsonl"):
        ids = [c["id"] for m in example["messages"] for c in m.get("tool_calls", [])]
        results = [m["tool_call_id"] for m in example["messages"] if m["role"] == "tool"]
        assert set(results) <= set(ids)  # every result answers a call that is there
        assert not any("ERROR:" in m["content"] for m in example["messages"])
        for message in example["messages"]:
            for call in message.get("tool_calls", []):
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
    assert run_josh("export", "kto", fc, "-o", str(tmp_path / "kto")).returncode == 0

    def malformed(example: dict[str, Any]) -> bool:
        for call in example["completion"][0].get("tool_calls", []):
            try:
                json.loads(call["function"]["arguments"])
            except ValueError:
                return True
        return False

    labels = [e["label"] for e in lines(tmp_path / "kto" / "train.jsonl") if malformed(e)]
    assert labels and not any(labels)


def test_an_export_refuses_to_replace_its_file_without_force(
    dry_run_trees: dict[str, Path], tmp_path: Path
) -> None:
    trees = str(dry_run_trees["react"])
    assert run_josh("export", "kto", trees, "-o", str(tmp_path)).returncode == 0
    (tmp_path / "train.jsonl").write_text("mine\n")
    again = run_josh("export", "kto", trees, "-o", str(tmp_path))
    assert again.returncode == 1 and "already exists; pass --force" in again.stderr
    assert (tmp_path / "train.jsonl").read_text() == "mine\n"
    forced = run_josh("export", "kto", trees, "-o", str(tmp_path), "--force")
    assert forced.returncode == 0 and (tmp_path / "train.jsonl").read_text() != "mine\n"


def test_bad_input_is_one_clear_message(dry_run_trees: dict[str, Path], tmp_path: Path) -> None:
    eval_run = tmp_path / "run.jsonl"
    assert run_josh("eval", "toolwoz", "--limit", "1", "--out", str(eval_run)).returncode == 0
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    a_file = tmp_path / "file"
    a_file.write_text("")
    trees = str(dry_run_trees["react"])
    cases = {
        (str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")): "does not exist",
        (str(text), "-o", str(tmp_path / "o")): "is not a josh run file",
        (str(eval_run), "-o", str(tmp_path / "o")): "a run file of `josh eval toolwoz`, not a trees file",
        ("-o", str(tmp_path / "o")): "name the trees file(s) to export",
        (trees, "--reference-trees", "-o", str(tmp_path / "o")): "not both",
        (trees, "-o", str(a_file / "sub")): "is a file, not a folder",
    }
    for args, message in cases.items():
        proc = run_josh("export", "sft", *args)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, (
            args,
            proc.stderr,
        )
        assert proc.stderr.count("error:") == 1
    assert not (tmp_path / "o").exists()


def test_damaged_lines_are_named_and_the_rest_exported(
    dry_run_trees: dict[str, Path], tmp_path: Path
) -> None:
    source = dry_run_trees["react"].read_text().splitlines()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([*source[:3], '{"task_id": "X", "nodes": [', *source[3:]]) + "\n")
    proc = run_josh("export", "kto", str(damaged), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 damaged line(s) (line 4: not valid JSON" in " ".join(proc.stderr.split())
    assert "records left out: damaged lines" in proc.stderr


def reference_files() -> dict[str, dict[str, Any]]:
    """The paper's released tree files, read directly from the wheel (no josh code between)."""
    with zipfile.ZipFile(download_wheel()) as wheel:
        archive = zipfile.ZipFile(io.BytesIO(wheel.read(REFERENCE_TREES_MEMBER)))
    return {n: json.loads(archive.read(n)) for n in archive.namelist() if n.endswith(".json")}


def test_the_papers_trees_export_through_the_same_exporter() -> None:
    files = reference_files()
    source = read_reference_trees(download_wheel(), system_prompt="SYS")
    assert len(source.trees) == len(files) == 926 and not source.invalid
    full = sum(1 for data in files.values() if data["100_percent_reached"] is True)
    sft = export_examples("sft", source.trees)
    assert len(sft.examples) == sft.trees_used == full == 631  # one conversation per tree at 100%
    # The paper's KTO script (finetune_agent.py create_training_instances), run as written on these files
    # outside josh, gives 16,632 examples: 7,060 desirable and 9,572 not. The reference selection matches.
    kto = export_examples("kto", source.trees, reference_selection=True)
    assert kto.counts == {"label true": 7060, "label false": 9572}
    assert kto.dropped == {"paths seen before (dedupe)": 1093}
    # every path of every file is a path of its rebuilt tree, and the marks agree
    tree = next(t for t in source.trees if t.record.task_id == "MUL0414")
    nodes = {n.id: n for n in tree.record.nodes}
    for messages, successful, golden in files["records/training_data_v2/sim_MUL0414.json"]["training_paths"]:
        if not messages:
            continue
        end = next(
            n for n in tree.record.nodes
            if [m for p in tree.node_path(n) for m in p.messages] and
            [m.content for p in tree.node_path(n) for m in p.messages] == [m["content"] for m in messages]
        )  # fmt: skip
        assert (nodes[end.id].successful or not successful) and (nodes[end.id].golden or not golden)


def test_the_cli_exports_the_papers_trees(tmp_path: Path) -> None:
    proc = run_josh("export", "sft", "--reference-trees", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    examples = lines(tmp_path / "train.jsonl")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(examples) == summary["examples"] == 631
    assert summary["source"] == {"reference_trees": f"josh-train 0.1.4 wheel: {REFERENCE_TREES_MEMBER}"}
    system = examples[0]["messages"][0]
    assert (
        system["role"] == "system" and "PLAN, APICALL, and SPEAK" in system["content"]
    )  # the paper's ReAct prompt
    assert "search_hotel" in system["content"]  # with the tool schemas filled in


def test_reading_trees_keeps_the_last_record_of_a_resumed_task(
    dry_run_trees: dict[str, Path], tmp_path: Path
) -> None:
    source = dry_run_trees["react"].read_text().splitlines()
    first = json.loads(source[1])
    retried = tmp_path / "retried.jsonl"
    failed = {"task_id": first["task_id"], "trial": 0, "status": "error", "reward": None}
    retried.write_text("\n".join([source[0], json.dumps(failed), *source[1:]]) + "\n")
    trees = read_trees([retried])
    assert len(trees.trees) == 20 and trees.errored == 0


def test_one_of_each_is_said_in_the_singular(dry_run_trees: dict[str, Path], tmp_path: Path) -> None:
    header, *rest = dry_run_trees["react"].read_text().splitlines()
    full = next(line for line in rest if json.loads(line).get("reward") == 1.0)
    one = tmp_path / "one.jsonl"
    one.write_text(f"{header}\n{full}\n")
    proc = run_josh("export", "sft", str(one), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0 and "wrote 1 sft example to" in proc.stderr, proc.stderr
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(f'{header}\n{{"task_id": "X", "nodes": [\n')
    proc = run_josh("export", "sft", str(damaged), "-o", str(tmp_path / "out2"))
    assert proc.returncode == 1 and "error: no trees to export: 1 line is damaged" in proc.stderr, proc.stderr
