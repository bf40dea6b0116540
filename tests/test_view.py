"""`josh view`: trees and eval run files as one self-contained HTML report, with hostile text kept inert."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from josh.errors import JoshError
from josh.rollout.record import CallResult, RolloutRecord
from josh.search.tree import NodeRecord, TreeRecord, UserToolTurn
from josh.types import AssistantMessage, ToolCall, ToolMessage, UserMessage
from josh.view import detect_kind, failed_first, load_source, render_page, render_tree, tree_shape
from tests.test_cli_data import run_josh
from tests.timing import ends_within

HOSTILE = '</script><script>alert(1)</script><img src=x onerror="alert(2)"> \ud800 & "quoted"'
TASK_ID = "<b>MUL</b></script><!--<script>"  # in the data as is: it must not end the <script> that holds it


# ------------------------------------------------------------------------------------------ building files
def node(node_id: int, parent: int | None, *messages: Any, **marks: Any) -> NodeRecord:
    return NodeRecord(id=node_id, parent=parent, messages=list(messages), **marks)


def agent_turn(text: str = "SPEAK ok") -> list[Any]:
    """A ReAct agent turn as it lands in a node: a call, its result, then the spoken reply."""
    return [
        AssistantMessage(
            content='PLAN look <COMMAND_END> APICALL {"name": "search_hotel", "parameters": {}}'
        ),
        UserMessage(content='APIRETURN [{"name": "acorn"}]'),
        AssistantMessage(content=f"PLAN tell <COMMAND_END> {text} <COMMAND_END>"),
    ]


def small_tree() -> TreeRecord:
    """Worked out by hand: 0 -> (1, 2); 1 -> (3, 4); 3 -> 5. Both 1 and 2 met search_hotel; 1, the left one,
    became the new root (golden), so 2 was pruned; 3, 4 and 5 came after the last reward (open)."""
    nodes = [
        node(0, None, UserMessage(content="Hi, I need a hotel."), successful=True, golden=True),
        node(1, 0, *agent_turn(), successful=True, golden=True, reward_events=["search_hotel"]),
        node(2, 0, *agent_turn(), successful=True, reward_events=["search_hotel"]),
        node(3, 1, *agent_turn(), UserMessage(content="And a taxi?")),
        node(4, 1, *agent_turn()),
        node(5, 3, *agent_turn(), UserMessage(content="bye END_CONVERSATION"), over=True),
    ]
    return TreeRecord(
        task_id="MUL0001",
        status="success",
        reward=0.5,
        goal_calls=["search_hotel", "book_taxi"],
        reward_events=["search_hotel", "search_hotel"],
        golden_reward_events=["search_hotel"],
        system_prompt="You are a travel agent.",
        agent="react",
        nodes=nodes,
        steps=3,
        ended="no_live_leaf",
    )


def beam_tree(
    task_id: str = "MUL0100", *, steps: int = 15, reward_step: int = 5, beam: int = 8
) -> TreeRecord:
    """A tree shaped as the search grows it: leaves split in two while the beam allows (1 -> 2 -> 4 -> 8), then
    go on alone; at `reward_step` the fourth leaf meets a goal, becomes the root, and the others are pruned.
    With the defaults: 1 + (2 + 4 + 8) + 8 * 2 = 31 nodes before the reward, (2 + 4 + 8) + 8 * 7 = 70 after:
    101 nodes, 6 golden (the root and the 5 on the way down), 25 pruned, 70 open, 8 leaves at the end."""
    nodes = [node(0, None, UserMessage(content="Hello, I am looking for a place to stay."))]
    parents: dict[int, int | None] = {0: None}
    leaves = [0]
    for step in range(1, steps + 1):
        grown = []
        for leaf in leaves:
            for _ in range(2 if 2 * len(leaves) <= beam else 1):
                new = len(nodes)
                nodes.append(
                    node(new, leaf, *agent_turn(f"SPEAK step {step}"), UserMessage(content="Go on."))
                )
                parents[new] = leaf
                grown.append(new)
        leaves = grown
        if step == reward_step:
            winner = leaves[3]
            at: int | None = winner
            while at is not None:
                nodes[at] = nodes[at].model_copy(update={"golden": True, "successful": True})
                at = parents[at]
            nodes[winner] = nodes[winner].model_copy(update={"reward_events": ["search_hotel"]})
            leaves = [winner]
    return TreeRecord(
        task_id=task_id, status="success", reward=0.5, goal_calls=["search_hotel", "book_hotel"],
        golden_reward_events=["search_hotel"], reward_events=["search_hotel"], agent="react", nodes=nodes,
        steps=steps, ended="max_steps", system_prompt="You are a travel agent.",
    )  # fmt: skip


def rollout(task_id: str, reward: float | None, **fields: Any) -> RolloutRecord:
    status = "success" if reward is not None else "error"
    return RolloutRecord(
        task_id=task_id,
        status=status,
        termination="user_ended" if reward is not None else "error",
        reward=reward,
        **fields,
    )


def run_file(path: Path, command: str, records: list[Any], extra_lines: list[str] = ()) -> Path:
    header = {"type": "header", "format_version": 1, "command": command, "config": {"agent": "react"}}
    lines = [json.dumps(header)]
    # json.dumps writes a lone surrogate as an escape (as a hand-made or foreign file may hold one)
    lines += [json.dumps(r.model_dump(mode="json") if hasattr(r, "model_dump") else r) for r in records]
    lines += list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def payload(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="josh-data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


SAFE_TAGS = {
    "article",
    "b",
    "code",
    "details",
    "div",
    "h2",
    "h3",
    "h4",
    "input",
    "label",
    "li",
    "option",
    "p",
    "pre",
    "section",
    "select",
    "span",
    "summary",
    "ul",
}  # fmt: skip (the page's own tags)


class Tags(HTMLParser):
    """Every tag and attribute name in an HTML fragment, as a browser's parser would find them."""

    def __init__(self, html: str):
        super().__init__()
        self.names: set[str] = set()
        self.attributes: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attributes.update(name for name, _ in attrs)


class Cards(HTMLParser):
    """The node cards of a tree fragment: id -> class list."""

    def __init__(self, html: str):
        super().__init__()
        self.cards: dict[int, list[str]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-node" in found:
            node_id = int(found["data-node"] or -1)
            assert node_id not in self.cards, f"node {node_id} drawn twice"
            self.cards[node_id] = (found.get("class") or "").split()


# ------------------------------------------------------------------------------------------------- trees
def test_each_node_is_drawn_once_with_its_state() -> None:
    cards = Cards(render_tree(small_tree())).cards
    assert sorted(cards) == [0, 1, 2, 3, 4, 5]
    states = {
        i: next(c for c in classes if c in ("golden", "pruned", "open")) for i, classes in cards.items()
    }
    assert states == {0: "golden", 1: "golden", 2: "pruned", 3: "open", 4: "open", 5: "open"}
    assert "successful" in cards[2] and "rewarded" in cards[2] and "successful" not in cards[3]
    assert "over" in cards[5] and "over" not in cards[3]


def test_a_tree_without_reward_prunes_nothing() -> None:
    tree = small_tree()
    unrewarded = [n.model_copy(update={"golden": False, "successful": False}) for n in tree.nodes]
    assert set(tree_shape(unrewarded).state.values()) == {"open"}


def test_a_full_beam_with_long_chains_is_drawn_whole() -> None:
    tree = beam_tree()
    shape = tree_shape(tree.nodes)
    assert len(shape.nodes) == 101
    assert shape.counts() == {"golden": 6, "pruned": 25, "open": 70}
    leaves = [i for i in shape.nodes if not shape.children[i]]
    assert len(leaves) == 7 + 8  # the winner's pruned peers, and the 8 leaves at the end
    cards = Cards(render_tree(tree)).cards
    assert len(cards) == 101 and sum("golden" in c for c in cards.values()) == 6
    assert sum("pruned" in c for c in cards.values()) == 25


def test_turns_are_told_apart() -> None:
    html = render_tree(small_tree())
    # node 3: call, result, reply, then the customer: one line each on its card
    card = re.search(r'data-node="3".*?</div></div>', html, re.S)
    assert card is not None
    assert re.findall(r'class="turn (\w+)"', card.group(0)) == ["call", "tool", "agent", "customer"]


def test_a_chain_of_thousands_of_nodes_renders() -> None:
    nodes = [node(0, None, UserMessage(content="hi"))] + [node(i, i - 1) for i in range(1, 3000)]
    tree = TreeRecord(task_id="LONG", status="success", reward=0.0, nodes=nodes)
    assert len(Cards(render_tree(tree)).cards) == 3000


def test_a_node_whose_parent_never_came_is_drawn_as_a_root() -> None:
    nodes = [node(0, None), node(1, 0), node(2, 7), node(1, 0)]  # a dangling parent, a repeated id
    shape = tree_shape(nodes)
    assert shape.roots == [0, 2] and shape.duplicates == 1
    assert sorted(Cards(render_tree(TreeRecord(task_id="X", status="success", reward=0.0, nodes=nodes))).cards) == [
        0, 1, 2,
    ]  # fmt: skip


def test_a_node_that_is_its_own_parent_is_drawn_as_a_root_and_the_walk_ends() -> None:
    with ends_within(5):  # it used to become its own child: the walk from the golden node never ended
        shape = tree_shape([node(0, None), node(1, 1, golden=True), node(2, 1)])
    assert shape.roots == [0, 1] and shape.children == {0: [], 1: [2], 2: []}


def test_trees_whose_nodes_form_no_tree_are_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def tree(task_id: str, *nodes: NodeRecord) -> TreeRecord:
        return TreeRecord(task_id=task_id, status="success", reward=1.0, nodes=list(nodes))

    bad = [
        tree("SELF", node(0, None), node(1, 1, golden=True)),
        tree("LOOP", node(0, None), node(1, 2), node(2, 1)),
        tree("MISSING", node(0, None), node(1, 7)),
        tree("TWICE", node(0, None), node(1, 0), node(1, 0)),
        tree("FORK", node(0, None, golden=True), node(1, 0, golden=True), node(2, 0, golden=True)),
    ]
    path = run_file(tmp_path / "t.jsonl", "harvest toolwoz", [small_tree(), *bad])
    with ends_within(10), caplog.at_level(logging.WARNING, logger="josh"):
        source = load_source(path)
        page = render_page(source)
    assert [t.task_id for t in source.trees] == ["MUL0001"]
    assert {s.task_id: s.reason for s in source.skipped} == {
        "SELF": "node 1 is its own parent",
        "LOOP": "node 1 has parent 2, which comes after it (a loop, or nodes out of order)",
        "MISSING": "node 1 has parent 7, which is not in the tree",
        "TWICE": "node id 1 appears twice",
        "FORK": "the golden path forks: golden nodes 1 and 2 are not on one path from the root",
    }
    assert "left out 5 record(s) that are not trees" in caplog.text
    assert all(f"{t.task_id}: not shown" in page for t in bad)


def test_a_tree_that_failed_outside_the_search_shows_its_error() -> None:
    failed = TreeRecord(task_id="MUL0002", status="error", reward=None, error="the endpoint refused the key")
    html = render_tree(failed)
    assert Cards(html).cards == {} and "reward <b>error</b>" in html
    assert (
        '<div class="error-box"><b>error</b><pre class="text">the endpoint refused the key</pre></div>'
        in html
    )


# ------------------------------------------------------------------------------------------ hostile text
def test_model_text_is_escaped_everywhere(tmp_path: Path) -> None:
    tree = small_tree().model_copy(
        update={
            "task_id": TASK_ID,
            "system_prompt": HOSTILE,
            "notes": [HOSTILE],
            "nodes": [
                node(0, None, UserMessage(content=HOSTILE)),
                node(
                    1, 0, AssistantMessage(content=HOSTILE, tool_calls=(ToolCall(id="c", name=HOSTILE, arguments={HOSTILE: HOSTILE}),)),
                    ToolMessage(tool_call_id="c", name=HOSTILE, content=HOSTILE, error=HOSTILE),
                    reward_events=[HOSTILE],
                ),
            ],
        }
    )  # fmt: skip
    page = render_page(load_source(run_file(tmp_path / "t.jsonl", "harvest toolwoz", [tree])))
    page.encode("utf-8")  # no lone surrogate left: the page is valid UTF-8
    # Outside the data, the page holds no markup of the record's; the data (JSON in a <script> element) holds
    # no `</` or `<!--` that could end the element early, and reads back exactly.
    blob = re.search(r'<script type="application/json" id="josh-data">(.*?)</script>', page, re.S)
    assert blob is not None and "</" not in blob.group(1) and "<!--" not in blob.group(1)
    outside = page.replace(blob.group(1), "")
    assert "<script>alert" not in outside and "<img" not in outside
    assert "<b>MUL" not in outside and outside.count("<script") == 2  # the data's and the page's own
    data = payload(page)
    fragment = data["items"][0]["html"] + "".join(data["prompts"])
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in fragment and "\ufffd" in fragment
    tags = Tags(fragment)
    assert tags.names <= SAFE_TAGS, tags.names - SAFE_TAGS
    assert not [a for a in tags.attributes if a.startswith("on") or a in ("src", "href", "style")]
    assert data["items"][0]["task"] == TASK_ID  # shown with textContent by the script, never as HTML


def test_a_huge_text_is_cut_with_a_show_all_toggle(tmp_path: Path) -> None:
    huge = "x" * 300_000
    tree = small_tree().model_copy(update={"nodes": [node(0, None, UserMessage(content=huge))]})
    html = render_tree(tree)
    assert "show all 300,000 characters" in html and "cut at 200,000 of 300,000 characters" in html
    # the card's one-line preview, the first 2,000 characters, and at most 200,000 behind "show all"
    assert html.count("x") < 160 + 2_000 + 200_000 + 1_000
    assert "show all" not in render_tree(small_tree())


def test_the_page_needs_no_network_and_runs_only_its_own_script(tmp_path: Path) -> None:
    page = render_page(load_source(run_file(tmp_path / "t.jsonl", "harvest toolwoz", [small_tree()])))
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b[^>]*\b(src|href)=", page)
    assert "@import" not in page and "url(" not in page
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy is not None and "default-src 'none'" in policy.group(1)
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy.group(1)  # its own script runs, and nothing else


# ------------------------------------------------------------------------------------------------ eval runs
def test_failed_conversations_come_first(tmp_path: Path) -> None:
    calls = [CallResult(turn=0, name="book_hotel", arguments={"name": "acorn"}, result={"ok": True}, rewards=["book_hotel"])]  # fmt: skip
    records = [
        rollout("MUL0001", 1.0, goal_calls=["book_hotel"], reward_events=["book_hotel"], calls=calls),
        rollout("MUL0002", 0.5, goal_calls=["search_hotel", "book_hotel"], failed_goals=["search_hotel"]),
        rollout("MUL0003", None, goal_calls=["book_taxi"], error="the endpoint stopped answering"),
        rollout("MUL0004", 0.0, goal_calls=["book_taxi"], failed_goals=["book_taxi"]),
    ]
    assert [r.task_id for r in failed_first(records)] == ["MUL0003", "MUL0004", "MUL0002", "MUL0001"]
    page = render_page(load_source(run_file(tmp_path / "run.jsonl", "eval toolwoz", records)))
    items = payload(page)["items"]
    assert [i["task"] for i in items] == ["MUL0003", "MUL0004", "MUL0002", "MUL0001"]
    assert [i["tone"] for i in items] == ["error", "zero", "part", "full"]
    assert "the endpoint stopped answering" in items[0]["html"] and 'class="error-box"' in items[0]["html"]
    assert '<li class="unmet">✗ search_hotel</li><li class="met">✓ book_hotel</li>' in items[2]["html"]
    passed = items[3]["html"]
    assert 'class="msg tool-call rewarded"' in passed and "★ book_hotel" in passed and "acorn" in passed
    assert "failed <b>3</b>" in page and "errors <b>1</b>" in page


def test_tool_calls_sit_in_the_agent_turn_that_made_them(tmp_path: Path) -> None:
    record = rollout(
        "MUL0001", 1.0,
        messages=[UserMessage(content="hello"), AssistantMessage(content="first reply"),
                  UserMessage(content="book it"), AssistantMessage(content="second reply")],
        calls=[CallResult(turn=1, name="book_hotel", arguments={}, result="done"),
               CallResult(turn=0, name="search_hotel", arguments={}, result=[])],
    )  # fmt: skip
    html = payload(render_page(load_source(run_file(tmp_path / "r.jsonl", "eval toolwoz", [record]))))[
        "items"
    ]
    order = re.findall(r"hello|search_hotel|first reply|book it|book_hotel|second reply", html[0]["html"])
    assert order == ["hello", "search_hotel", "first reply", "book it", "book_hotel", "second reply"]


def test_a_greeting_is_no_agent_turn_and_the_customers_calls_come_before_its_line(tmp_path: Path) -> None:
    # tau2: the agent greets first; its turn 0 is the reply to the customer's first line. The customer's
    # calls carry the number of agent turns before them: customer turn k comes before agent turn k.
    record = rollout(
        "telecom_1", 1.0,
        messages=[AssistantMessage(content="greeting"), UserMessage(content="hello"),
                  AssistantMessage(content="first reply"), UserMessage(content="done it"),
                  AssistantMessage(content="second reply")],
        calls=[CallResult(turn=0, name="get_customer", arguments={}, result={}),
               CallResult(turn=1, name="refuel_data", arguments={}, result="ok", rewards=["refuel_data"])],
        user_calls=[CallResult(turn=0, name="check_status_bar", arguments={}, result="no signal"),
                    CallResult(turn=1, name="toggle_roaming", arguments={}, result="on", rewards=["toggle_roaming"])],
    )  # fmt: skip
    html = payload(render_page(load_source(run_file(tmp_path / "r.jsonl", "eval tau2", [record]))))["items"][
        0
    ]["html"]
    names = (
        "greeting|check_status_bar|hello|get_customer|first reply|toggle_roaming|done it|refuel_data|second"
    )
    found = re.findall(names, html)
    assert [n for i, n in enumerate(found) if not i or found[i - 1] != n] == names.split("|")  # stars repeat
    assert html.count('class="msg tool-call customer-call') == 2 and "2 customer's own calls" in html
    assert 'class="msg tool-call customer-call rewarded"' in html  # its goal is starred like the agent's


def test_customer_calls_of_a_failed_turn_close_the_transcript(tmp_path: Path) -> None:
    record = rollout(
        "telecom_2", 0.0,
        messages=[UserMessage(content="hello"), AssistantMessage(content="reply")],
        user_calls=[CallResult(turn=1, name="reboot_device", arguments={}, result="rebooted")],
        calls=[CallResult(turn=0, name="get_customer", arguments={}, result={})],
    )  # fmt: skip
    html = render_rollout_html(tmp_path, record)
    assert re.findall("hello|get_customer|reply|reboot_device", html) == ["hello", "get_customer", "reply", "reboot_device"]  # fmt: skip


def render_rollout_html(tmp_path: Path, record: RolloutRecord) -> str:
    return payload(render_page(load_source(run_file(tmp_path / "r.jsonl", "eval tau2", [record]))))["items"][
        0
    ]["html"]


def test_a_nodes_customer_calls_sit_before_what_it_then_said() -> None:
    call = AssistantMessage(
        content="", tool_calls=[ToolCall(id="u1", name="toggle_airplane_mode", arguments={})]
    )
    result = ToolMessage(tool_call_id="u1", name="toggle_airplane_mode", content="flight mode: off")
    nodes = [
        node(0, None, AssistantMessage(content="greeting"), UserMessage(content="my phone"), golden=True),
        node(1, 0, AssistantMessage(content="please switch it off"), UserMessage(content="done"),
             golden=True, reward_events=["toggle_airplane_mode"],
             user_tool_turns=[UserToolTurn(before=1, messages=[call, result])]),
    ]  # fmt: skip
    html = render_tree(TreeRecord(task_id="t", status="success", reward=1.0, goal_calls=["x"], nodes=nodes))
    text = html[html.index('<div data-body="1">') :]
    assert re.findall("please switch|toggle_airplane_mode|flight mode: off|done", text)[:4] == [
        "please switch", "toggle_airplane_mode", "flight mode: off", "done"
    ]  # fmt: skip
    assert "customer-call" in text and '<span class="phone"' in html and "☎ 1" in html
    assert "☎ the customer's own tool calls</span>" in html  # the legend says what ☎ is
    assert "☎" not in render_tree(small_tree())  # ToolWOZ trees are drawn as before


# ------------------------------------------------------------------------------------------ reading files
def test_the_kind_comes_from_the_command_or_the_records(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    assert detect_kind(path, {"command": "harvest toolwoz"}, []) == "trees"
    assert detect_kind(path, {"command": "eval toolwoz"}, []) == "runs"
    assert detect_kind(path, {"command": "eval tau2"}, []) == "runs"
    assert detect_kind(path, {}, [{"task_id": "A", "nodes": []}]) == "trees"
    assert detect_kind(path, {"command": "other"}, [{"task_id": "A", "termination": "max_turns"}]) == "runs"
    with pytest.raises(JoshError, match="neither harvested trees nor evaluated conversations"):
        detect_kind(path, {"command": "score"}, [{"task_id": "A"}])


def test_damaged_lines_and_foreign_records_are_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = run_file(
        tmp_path / "t.jsonl", "harvest toolwoz", [small_tree(), {"task_id": "MUL0009", "reward": 1.0}],
        extra_lines=["{not json", json.dumps(beam_tree("MUL0010", steps=3).model_dump(mode="json"))],
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="josh"):
        source = load_source(path)
    assert [t.task_id for t in source.trees] == ["MUL0001", "MUL0010"]
    assert [(s.task_id, s.reason) for s in source.skipped] == [("MUL0009", "status: Field required")]
    assert [n for n, _ in source.damaged] == [4]
    assert "left out 1 record(s) that are not trees" in caplog.text and "damaged line" in caplog.text
    page = render_page(source)
    assert "2 line(s) of the file could not be shown" in page and "MUL0009: not shown" in page


def test_odd_rewards_and_marks_are_left_out_and_a_torn_last_line_is_named_without_a_resume_promise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = [rollout("GOOD", 1.0).model_dump(mode="json")]
    runs += [rollout(f"R{n}", 1.0).model_dump(mode="json") | change
             for n, change in enumerate([{"reward": 5.0}, {"partial_reward": -1.0}, {"reward": True}])]  # fmt: skip
    path = run_file(tmp_path / "r.jsonl", "eval toolwoz", runs)
    with open(path, "a") as fh:
        fh.write('{"task_id": "TORN", "rew')
    with caplog.at_level(logging.WARNING, logger="josh"):
        source = load_source(path)
    assert [r.task_id for r in source.rollouts] == ["GOOD"]
    assert [(s.task_id, s.reason.split(" [")[0]) for s in source.skipped] == [
        ("R0", "reward: Input should be less than or equal to 1"),
        ("R1", "partial_reward: Input should be greater than or equal to 0"),
        ("R2", "reward: Input should be a valid number"),
    ]
    assert source.damaged == [(6, "torn (24 bytes without a newline: a run killed while writing it)")]
    assert f"{path}: skipped 1 damaged line(s) (line 6: torn" in caplog.text and "--resume" not in caplog.text
    tree = small_tree().model_dump(mode="json")
    tree["nodes"][1]["golden"] = "no"
    trees = load_source(run_file(tmp_path / "t.jsonl", "harvest toolwoz", [tree]))
    assert trees.trees == [] and trees.skipped[0].reason.startswith(
        "nodes.1.golden: Input should be a valid boolean"
    )


def test_the_latest_record_of_a_task_wins(tmp_path: Path) -> None:
    failed = rollout("MUL0001", None, error="boom")
    path = run_file(tmp_path / "r.jsonl", "eval toolwoz", [failed, rollout("MUL0001", 1.0)])
    assert [r.reward for r in load_source(path).rollouts] == [1.0]


# ------------------------------------------------------------------------------------------------- the CLI
def test_josh_view_writes_the_report_and_fails_in_one_line(tmp_path: Path) -> None:
    trees = run_file(tmp_path / "trees.jsonl", "harvest toolwoz", [small_tree(), beam_tree()])
    done = run_josh("view", str(trees), "-o", str(tmp_path / "out" / "report.html"))
    assert done.returncode == 0, done.stderr
    assert "2 trees" in done.stdout and (tmp_path / "out" / "report.html").is_file()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind
    missing = run_josh("view", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "nope.jsonl does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    itself = run_josh("view", str(trees), "--out", str(trees))
    assert itself.returncode == 1 and "is the run file itself" in itself.stderr


def test_the_report_goes_beside_the_run_file_by_default(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from josh.cli.main import app

    trees = run_file(tmp_path / "trees.jsonl", "harvest toolwoz", [small_tree()])
    result = CliRunner().invoke(app, ["view", str(trees)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "trees.html").is_file()
