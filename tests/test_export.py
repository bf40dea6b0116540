"""`josh.export`: SFT / KTO / DPO examples from hand-made trees, with every expected example written out."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from josh.errors import JoshError
from josh.export import (
    HarvestedTree,
    TrainingPath,
    export_examples,
    read_trees,
    reference_kto,
    training_paths,
    tree_from_paths,
    write_export,
)
from josh.export import writer as writer_module
from josh.export.examples import ExportResult
from josh.search import NodeRecord, TreeRecord
from josh.types import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage

SYS = {"role": "system", "content": "SYS"}
OPENING = UserMessage(content="I need a hotel in the north")
CALL = AssistantMessage(
    content='PLAN look <COMMAND_END> APICALL {"name": "search_hotel", "parameters": {"area": "north"}} <COMMAND_END>'
)
RETURN = UserMessage(content='APIRETURN [{"name": "acorn"}]')
SAY = AssistantMessage(content="PLAN tell <COMMAND_END> SPEAK The acorn guest house. <COMMAND_END>")
ASK = AssistantMessage(content="PLAN ask <COMMAND_END> SPEAK Which price range? <COMMAND_END>")
ANSWER = UserMessage(content="Any price.")

# What the messages above look like in a training file.
U = {"role": "user", "content": OPENING.content}
A_CALL = {"role": "assistant", "content": CALL.content}
A_RET = {"role": "user", "content": RETURN.content}
A_SAY = {"role": "assistant", "content": SAY.content}
A_ASK = {"role": "assistant", "content": ASK.content}


def tree(
    nodes: list[NodeRecord], *, reward: float = 1.0, tools: list[dict[str, Any]] | None = None
) -> HarvestedTree:
    return HarvestedTree(
        TreeRecord(
            task_id="T1", status="success", reward=reward, system_prompt="SYS", nodes=nodes, tools=tools or []
        )
    )


def node(id: int, parent: int | None, messages: list[Message], **marks: Any) -> NodeRecord:
    return NodeRecord(id=id, parent=parent, messages=messages, **marks)


def small_tree() -> HarvestedTree:
    """The customer opens (node 0); two siblings answer: node 1 searches (a reward: golden), node 2 asks
    a question the customer answers, and is pruned."""
    return tree(
        [
            node(0, None, [OPENING], successful=True, golden=True),
            node(1, 0, [CALL, RETURN, SAY], successful=True, golden=True, reward_events=["search_hotel"]),
            node(2, 0, [ASK, ANSWER]),
        ]
    )


def test_sft_kto_dpo_of_a_small_tree_by_hand() -> None:
    trees = [small_tree()]
    sft = export_examples("sft", trees)
    assert sft.examples == [{"messages": [SYS, U, A_CALL, A_RET, A_SAY], "tools": []}]
    kto = export_examples("kto", trees)
    assert kto.examples == [
        {"prompt": [SYS, U], "completion": [A_CALL], "label": True, "tools": []},
        {"prompt": [SYS, U, A_CALL, A_RET], "completion": [A_SAY], "label": True, "tools": []},
        {"prompt": [SYS, U], "completion": [A_ASK], "label": False, "tools": []},
    ]
    assert kto.counts == {"label true": 2, "label false": 1}
    dpo = export_examples("dpo", trees)
    assert dpo.examples == [{"prompt": [SYS, U], "chosen": [A_CALL], "rejected": [A_ASK], "tools": []}]
    assert (dpo.counts, dpo.trees_used) == ({"pairs": 1, "prompts": 1}, 1)


def test_the_reference_selection_of_a_small_tree_by_hand() -> None:
    """The reference records, at the collapse on node 1, every node under the root as it was then (last
    user-role messages cut); its KTO script takes the replies after each path's last user-role message
    (here the APIRETURN stops the walk before the APICALL), labelled by the path's successful mark."""
    trees = [small_tree()]
    assert training_paths(trees[0]) == [
        TrainingPath((), True, True),  # the root: the opening alone, cut
        TrainingPath((OPENING, CALL, RETURN, SAY), True, True),
        TrainingPath((OPENING, ASK), False, False),  # the customer's answer came after: cut
    ]
    kto = export_examples("kto", trees, reference_selection=True)
    assert kto.examples == [
        {"prompt": [SYS, U, A_CALL, A_RET], "completion": [A_SAY], "label": True, "tools": []},
        {"prompt": [SYS, U], "completion": [A_ASK], "label": False, "tools": []},
    ]
    # SFT (sft_agent_successful.py): each clean reply with the conversation up to it. The script's
    # command pattern knows THOUGHTS, not PLAN, so it finds one command in the APICALL reply, not two,
    # and rejects it: only the SPEAK is an example.
    sft = export_examples("sft", trees, reference_selection=True)
    assert sft.examples == [{"messages": [SYS, U, A_CALL, A_RET, A_SAY], "tools": []}]
    assert sft.dropped == Counter({"replies that fail clean_good_utterance": 1})
    assert export_examples("dpo", trees, reference_selection=True).examples == []  # no shared prompt


def test_the_reference_records_every_collapse_and_what_was_under_its_root() -> None:
    """Two collapses: node 1 (step 1), then node 3 (step 2). At the first, nodes 0-2 as they were then
    (node 1 without the customer's later reply); at the second, node 1 again (the same path: once) and its
    children 3 and 4. Each step's siblings answered the same prompt, one rewarded: a pair each."""
    o, a1, u2 = OPENING, AssistantMessage(content="SPEAK one"), UserMessage(content="And a taxi?")
    a2, a3, a4 = (AssistantMessage(content=f"SPEAK {word}") for word in ("two", "three", "four"))
    two_steps = tree(
        [
            node(0, None, [o], successful=True, golden=True),
            node(1, 0, [a1, u2], successful=True, golden=True, reward_events=["g1"]),
            node(2, 0, [a2]),
            node(3, 1, [a3], successful=True, golden=True, reward_events=["g2"]),
            node(4, 1, [a4]),
        ]
    )
    assert training_paths(two_steps) == [
        TrainingPath((), True, True),
        TrainingPath((o, a1), True, True),
        TrainingPath((o, a2), False, False),
        TrainingPath((o, a1, u2, a3), True, True),
        TrainingPath((o, a1, u2, a4), False, False),
    ]
    kto = export_examples("kto", [two_steps], reference_selection=True)
    assert [(len(e["prompt"]), e["completion"][0]["content"], e["label"]) for e in kto.examples] == [
        (2, "SPEAK one", True),
        (2, "SPEAK two", False),
        (4, "SPEAK three", True),
        (4, "SPEAK four", False),
    ]
    dpo = export_examples("dpo", [two_steps], reference_selection=True)
    assert [(e["chosen"][0]["content"], e["rejected"][0]["content"]) for e in dpo.examples] == [
        ("SPEAK one", "SPEAK two"),
        ("SPEAK three", "SPEAK four"),
    ]


def test_only_trees_at_reward_1_give_sft_and_the_path_is_the_golden_one() -> None:
    partial = small_tree()
    partial.record = partial.record.model_copy(update={"reward": 0.5})
    result = export_examples("sft", [partial])
    assert result.examples == [] and result.skipped_trees == Counter({"reward below 1.0": 1})
    two_branches = tree(
        [
            node(0, None, [OPENING], golden=True),
            node(1, 0, [SAY], golden=True),
            node(2, 0, [ASK], golden=True),
        ]
    )
    result = export_examples("sft", [two_branches])
    assert result.examples == [] and result.skipped_trees == Counter({"no golden path from the root": 1})


FC_TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]
BAD = AssistantMessage(
    tool_calls=(ToolCall(id="c0", name="search_hotel", raw_arguments='{"area": ', parse_error="not JSON"),)
)
BAD_RESULT = ToolMessage(
    tool_call_id="c0", content='"ERROR: INVALID API CALL! THE ARGUMENTS ARE NOT A VALID JSON OBJECT"'
)
GOOD = AssistantMessage(tool_calls=(ToolCall(id="c1", name="search_hotel", arguments={"area": "north"}),))
GOOD_RESULT = ToolMessage(tool_call_id="c1", name="search_hotel", content='[{"name": "acorn"}]')
REPLY = AssistantMessage(content="The acorn guest house.")
STAND_IN = AssistantMessage(content="Error: Agent ran out of retries.")


def fc_tree() -> HarvestedTree:
    """Function calling: node 1's turn makes a malformed call (its error result follows), then a good call
    that meets the goal, then replies. Node 2 (pruned) ran out of model calls."""
    return tree(
        [
            node(0, None, [OPENING], successful=True, golden=True),
            node(
                1,
                0,
                [BAD, BAD_RESULT, GOOD, GOOD_RESULT, REPLY],
                successful=True,
                golden=True,
                reward_events=["search_hotel"],
            ),
            node(2, 0, [GOOD, GOOD_RESULT, STAND_IN]),
        ],
        tools=FC_TOOLS,
    )


OUT_GOOD = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "search_hotel", "arguments": '{"area": "north"}'},
        }
    ],
}
OUT_GOOD_RESULT = {"role": "tool", "tool_call_id": "c1", "content": GOOD_RESULT.content}
OUT_BAD = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "search_hotel", "arguments": '{"area": '}}
    ],
}
OUT_BAD_RESULT = {"role": "tool", "tool_call_id": "c0", "content": BAD_RESULT.content}
OUT_REPLY = {"role": "assistant", "content": REPLY.content}


def test_protocol_errors_are_dropped_from_sft_and_never_desirable_in_kto() -> None:
    trees = [fc_tree()]
    sft = export_examples("sft", trees)
    # the malformed call and the error result answering it go; the rest of the turn stays
    assert sft.examples == [{"messages": [SYS, U, OUT_GOOD, OUT_GOOD_RESULT, OUT_REPLY], "tools": FC_TOOLS}]
    assert sft.dropped == Counter({"replies dropped: tool-call arguments are not a JSON object": 1})
    kto = export_examples("kto", trees)
    assert kto.examples == [
        {"prompt": [SYS, U], "completion": [OUT_BAD], "label": False, "tools": FC_TOOLS},  # on a successful path
        {"prompt": [SYS, U, OUT_BAD, OUT_BAD_RESULT], "completion": [OUT_GOOD], "label": True, "tools": FC_TOOLS},
        {"prompt": [SYS, U, OUT_BAD, OUT_BAD_RESULT, OUT_GOOD, OUT_GOOD_RESULT], "completion": [OUT_REPLY],
         "label": True, "tools": FC_TOOLS},
        {"prompt": [SYS, U], "completion": [OUT_GOOD], "label": False, "tools": FC_TOOLS},
        # node 2's stand-in "Error: Agent ran out of retries." is not the model's: no example
    ]  # fmt: skip
    assert kto.dropped == Counter(
        {"replies that are the agent's stand-in for a failed one (no model output)": 1}
    )
    # Both siblings' first replies answer [SYS, U], and neither is desirable (a malformed call on the
    # successful path, a good call on the pruned one): no pair.
    assert export_examples("dpo", trees).examples == []


def test_a_reply_that_ended_its_branch_under_strict_errors_goes_by_the_notes() -> None:
    """Under strict errors an APICALL whose name is a list ends the branch (the reference crashes there):
    nothing in the message says so, the node's note does. Here the turn met its goal first."""
    crash = AssistantMessage(
        content='PLAN more <COMMAND_END> APICALL {"name": ["x"], "parameters": {}} <COMMAND_END>'
    )
    notes = ["APICALL name is an array, not a string (strict errors: this branch ends here)"]
    crashed = tree(
        [
            node(0, None, [OPENING], successful=True, golden=True),
            node(1, 0, [CALL, RETURN, crash], successful=True, golden=True, over=True, notes=notes),
        ]
    )
    kto = export_examples("kto", [crashed])
    assert [(e["completion"][0]["content"], e["label"]) for e in kto.examples] == [
        (CALL.content, True),
        (crash.content, False),
    ]
    sft = export_examples("sft", [crashed])  # the crash goes, and the conversation ends on the agent's reply
    assert sft.examples == [{"messages": [SYS, U, A_CALL], "tools": []}]
    assert sft.dropped == Counter(
        {"replies dropped: ended its branch under strict errors (the reference crashes there)": 1}
    )


def test_paths_rebuild_a_tree_from_their_shared_prefixes() -> None:
    """The paper's files hold paths only: the shared prefix becomes a node, each branch another."""
    paths = [
        TrainingPath((), True, True),
        TrainingPath((OPENING, CALL, RETURN, SAY), True, True),
        TrainingPath((OPENING, ASK), False, False),
    ]
    record = tree_from_paths("T9", paths, reached_full=True, system_prompt="SYS")
    assert [(n.id, n.parent, n.messages, n.successful, n.golden) for n in record.nodes] == [
        (0, None, [OPENING], True, True),
        (1, 0, [CALL, RETURN, SAY], True, True),
        (2, 0, [ASK], False, False),
    ]
    assert (record.reward, record.agent, record.system_prompt) == (1.0, "react", "SYS")
    rebuilt = HarvestedTree(record, paths)
    assert export_examples("sft", [rebuilt]).examples == [
        {"messages": [SYS, U, A_CALL, A_RET, A_SAY], "tools": []}
    ]
    assert (
        reference_kto([rebuilt]).examples
        == export_examples("kto", [small_tree()], reference_selection=True).examples
    )


def test_the_reference_kto_dedupes_paths_across_trees_and_keeps_the_first() -> None:
    first = HarvestedTree(small_tree().record, [TrainingPath((OPENING, ASK), True, False)])
    second = HarvestedTree(small_tree().record, [TrainingPath((OPENING, ASK), False, False)])
    result = reference_kto([first, second])
    assert [e["label"] for e in result.examples] == [True]
    assert result.dropped == Counter({"paths seen before (dedupe)": 1})


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "trees.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


HEADER = '{"type": "header", "format_version": 1, "command": "harvest toolwoz", "config_hash": "x"}'


def test_reading_trees_skips_damaged_lines_and_invalid_records_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = small_tree().record.model_dump_json()
    path = write(
        tmp_path,
        [
            HEADER,
            good,
            "{not json",
            '{"task_id": "T2", "nodes": 3}',
            '{"task_id": "T3", "status": "error", "reward": null}',
        ],
    )
    source = read_trees([path])
    assert [t.record.task_id for t in source.trees] == ["T1"]
    assert (source.damaged_lines, source.errored, len(source.invalid)) == (1, 1, 1)
    assert "line 3" in caplog.text and "tree T2 (trial 0)" in caplog.text


def test_a_torn_last_line_counts_as_a_damaged_line_and_the_warning_makes_no_resume_promise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, [HEADER, small_tree().record.model_dump_json()])
    with open(path, "a") as fh:
        fh.write('{"task_id": "T2", "nodes": [')
    source = read_trees([path])
    assert [t.record.task_id for t in source.trees] == ["T1"] and source.damaged_lines == 1
    assert f"{path}: skipped 1 damaged line(s) (line 3: torn (28 bytes without a newline" in caplog.text
    assert "--resume" not in caplog.text


def test_trees_whose_golden_path_forks_or_whose_node_is_its_own_parent_are_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def line(task_id: str, *nodes: NodeRecord) -> str:
        return TreeRecord(task_id=task_id, status="success", reward=1.0, nodes=list(nodes)).model_dump_json()

    path = write(
        tmp_path,
        [
            HEADER,
            line(
                "FORK",
                node(0, None, [OPENING], golden=True),
                node(1, 0, [SAY], golden=True),
                node(2, 0, [ASK], golden=True),
            ),
            line("SELF", node(0, None, [OPENING]), node(1, 1, [SAY])),
            small_tree().record.model_dump_json(),
        ],
    )
    source = read_trees([path])
    assert [t.record.task_id for t in source.trees] == ["T1"]
    assert source.invalid == [
        f"{path}: tree FORK (trial 0): the golden path forks: golden nodes 1 and 2 are not on one path from the root",
        f"{path}: tree SELF (trial 0): node 1 is its own parent",
    ]
    assert "skipped 2 record(s) that are not valid trees" in caplog.text


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"reward": 5.0}, "reward: Input should be less than or equal to 1"),
        ({"reward": -0.5}, "reward: Input should be greater than or equal to 0"),
        ({"reward": True}, "reward: Input should be a valid number"),
        ({"reward": "1.0"}, "reward: Input should be a valid number"),
        ({"final_reward": 1.5}, "final_reward: Input should be less than or equal to 1"),
        ({"golden": "no"}, "nodes.1.golden: Input should be a valid boolean"),
        ({"successful": 1}, "nodes.1.successful: Input should be a valid boolean"),
        ({"over": "false"}, "nodes.1.over: Input should be a valid boolean"),
        ({"parent": True}, "nodes.1.parent: Input should be a valid integer"),
        ({"id": "1"}, "nodes.1.id: Input should be a valid integer"),
    ],
)
def test_rewards_outside_0_1_and_marks_that_are_not_booleans_make_no_tree(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    data = small_tree().record.model_dump(mode="json")
    (data if change.keys() <= TreeRecord.model_fields.keys() else data["nodes"][1]).update(change)
    path = write(tmp_path, [HEADER, json.dumps(data)])
    source = read_trees([path])
    assert source.trees == [] and len(source.invalid) == 1
    assert source.invalid[0].startswith(f"{path}: tree T1 (trial 0): not a tree record: {problem}")


def test_reading_an_eval_run_or_a_file_that_is_no_run_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JoshError, match="is a run file of `josh eval toolwoz`, not a trees file"):
        read_trees([write(tmp_path, [HEADER.replace("harvest", "eval")])])
    with pytest.raises(JoshError, match="does not exist"):
        read_trees([tmp_path / "missing.jsonl"])
    with pytest.raises(JoshError, match="not a josh run file"):
        read_trees([write(tmp_path, ["hello"])])


def test_an_export_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    result = ExportResult("sft", "josh", examples=[{"n": i} for i in range(5)], origins=["T/0"] * 5)
    write_export(out, result, {"kind": "sft"}, force=False)
    before = (out / "train.jsonl").read_text()
    assert before.splitlines() == [f'{{"n": {i}}}' for i in range(5)]
    with pytest.raises(JoshError, match="already exists; pass --force"):
        write_export(out, result, {"kind": "sft"}, force=False)
    calls = []

    def dies_on_the_third_line(obj: Any) -> str:
        calls.append(obj)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill in the middle of the file
        return "{}"

    monkeypatch.setattr(writer_module, "dumps_line", dies_on_the_third_line)
    with pytest.raises(KeyboardInterrupt):
        write_export(out, result, {"kind": "sft"}, force=True)
    assert (out / "train.jsonl").read_text() == before  # the old file, whole
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "train.jsonl"]  # no temporary file left
