"""The JOSH search core on a toy environment with a scripted agent: no ToolWOZ, no agent, no model.

A toy branch is named by its path from the first root: "L"/"R" for each split. Its agent turn at step s does
what `plan[(path, s)]` says (call goals, fail), else calls nothing; its customer hangs up where `hang_up`
says. Every expected value below is worked out by hand from the rules in `josh.search.beam`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from josh.search import JoshSearch, NodeRecord, SearchConfig, Tree, tree_problem
from josh.types import AssistantMessage, Message, ToolMessage, UserMessage


@dataclass
class ToyTurn:
    messages: list[Message]
    reward_events: list[str]
    over: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class ToyReply:
    messages: list[Message]
    done: bool
    notes: list[str] = field(default_factory=list)
    reward_events: list[str] = field(default_factory=list)
    tool_messages: list[Message] = field(default_factory=list)


@dataclass
class Toy:
    """What every branch of one toy tree shares: the script, and a log of who ran when."""

    plan: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # goals called; "!" = the turn fails
    hang_up: set[tuple[str, int]] = field(default_factory=set)  # (path, customer turn; 1 is the opening)
    acts: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # goals the customer's turn meets
    agent_turns: list[str] = field(default_factory=list)
    user_turns: list[str] = field(default_factory=list)
    careless: bool = False  # report every goal called, pending or not
    gate: asyncio.Event | None = None  # when set up: each agent turn waits for all leaves of its step
    expected: int = 0
    started: int = 0


@dataclass
class ToyBranch:
    toy: Toy
    pending: list[str]
    path: str = ""
    steps: int = 0  # agent turns taken on this line
    said: int = 0  # customer turns on this line
    preamble: list[Message] = field(default_factory=list)

    def fork(self, count: int) -> list[ToyBranch]:
        return [
            ToyBranch(self.toy, list(self.pending), self.path + "LR"[k], self.steps, self.said)
            for k in range(count)
        ]

    async def agent_turn(self) -> ToyTurn:
        self.steps += 1
        if self.toy.gate is not None:
            self.toy.started += 1
            if self.toy.started == self.toy.expected:
                self.toy.gate.set()
            await asyncio.wait_for(self.toy.gate.wait(), timeout=2)
        self.toy.agent_turns.append(f"{self.path}@{self.steps}")
        action = self.toy.plan.get((self.path, self.steps), [])
        met = [g for g in action if g != "!" and (self.toy.careless or g in self.pending)]
        self.pending = [g for g in self.pending if g not in met]
        return ToyTurn([AssistantMessage(content=f"{self.path}@{self.steps}")], met, over="!" in action)

    async def user_turn(self) -> ToyReply:
        self.said += 1
        self.toy.user_turns.append(f"{self.path}#{self.said}")
        done = (self.path, self.said) in self.toy.hang_up
        action = self.toy.acts.get((self.path, self.said), [])
        met = [g for g in action if self.toy.careless or g in self.pending]
        self.pending = [g for g in self.pending if g not in met]
        traffic: list[Message] = [ToolMessage(tool_call_id=g, content=f"did {g}") for g in action]
        return ToyReply([UserMessage(content=f"{self.path}#{self.said}")], done, [], met, traffic)


def search(toy: Toy, goals: list[str], **config: object) -> Tree:
    root = ToyBranch(toy, list(goals))
    return asyncio.run(JoshSearch(SearchConfig.model_validate(config)).run(root, goals))


def shape(tree: Tree) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for node in tree.nodes:
        if node.parent is not None:
            children.setdefault(node.parent, []).append(node.id)
    return children


def test_the_beam_splits_1_2_4_8_then_each_leaf_goes_on_alone() -> None:
    toy = Toy()
    tree = search(toy, ["a"], beam=8, max_steps=5)
    assert [n.id for n in tree.nodes] == list(range(15))  # 1 + 2 + 4 + 8, in creation order
    assert shape(tree) == {
        0: [1, 2], 1: [3, 4], 2: [5, 6], 3: [7, 8], 4: [9, 10], 5: [11, 12], 6: [13, 14]
    }  # fmt: skip
    assert tree.nodes[0].parent is None and tree.steps == 5 and tree.ended == "max_steps"
    # Agent turns per step: 2, 4, 8, then the same 8 leaves twice more.
    assert len(toy.agent_turns) == 2 + 4 + 8 + 8 + 8
    assert toy.agent_turns[:6] == ["L@1", "R@1", "LL@2", "LR@2", "RL@2", "RR@2"]
    # Steps 3 to 5 are added to the same leaf: three agent turns, each followed by the customer.
    assert [m.content for m in tree.nodes[7].messages] == [
        "LLL@3",
        "LLL#4",
        "LLL@4",
        "LLL#5",
        "LLL@5",
        "LLL#6",
    ]
    assert [m.content for m in tree.nodes[0].messages] == ["#1"]  # the customer opened once, at the root
    assert tree.reward == 0.0 and not any(n.golden or n.successful for n in tree.nodes)


@pytest.mark.parametrize(("beam", "leaves"), [(2, 2), (6, 4), (7, 4), (16, 16)])
def test_the_beam_limit(beam: int, leaves: int) -> None:
    toy = Toy()
    tree = search(toy, ["a"], beam=beam, max_steps=5)
    last_step = [t for t in toy.agent_turns if t.endswith("@5")]
    assert len(last_step) == leaves
    assert len(tree.nodes) == 2 * leaves - 1


def test_the_first_rewarded_leaf_from_the_left_becomes_the_root() -> None:
    # Step 2: LR meets a, RL meets a and b. LR is left of RL: it becomes the root, and only its goal (a) is
    # credited. Step 3: the new root splits; its right child meets b.
    toy = Toy(plan={("LR", 2): ["a"], ("RL", 2): ["a", "b"], ("LRR", 3): ["b"]})
    tree = search(toy, ["a", "b"])
    nodes = tree.nodes
    assert shape(tree) == {0: [1, 2], 1: [3, 4], 2: [5, 6], 4: [7, 8]}
    assert [n.id for n in nodes if n.successful] == [0, 1, 2, 4, 5, 8]
    assert [n.id for n in nodes if n.golden] == [0, 1, 4, 8]
    assert nodes[5].reward_events == ["a", "b"] and nodes[4].reward_events == ["a"]
    assert nodes[8].reward_events == ["b"]
    assert tree.credited == ["a", "b"] and tree.reward == 1.0 and tree.ended == "all_goals"
    assert tree.reward_events == ["a", "a", "b", "b"]
    # Pruned leaves keep their turn but are never continued: no customer turn after step 2.
    assert [m.content for m in nodes[5].messages] == ["RL@2"]
    assert [m.content for m in nodes[4].messages] == ["LR@2", "LR#3"]
    assert toy.user_turns == ["#1", "L#2", "R#2", "LR#3"]
    # All goals met in step 3: no customer turn after it.
    assert [m.content for m in nodes[8].messages] == ["LRR@3"] and tree.steps == 3


def test_a_rewarded_leaf_marks_its_path_only_up_to_the_current_root() -> None:
    # Step 1: L meets a (root: L). Step 2: both children of L meet b; LR is pruned but successful.
    # Its path up to the current root (L) is marked; R, pruned in step 1 without reward, is not.
    toy = Toy(plan={("L", 1): ["a"], ("LL", 2): ["b"], ("LR", 2): ["b"]})
    tree = search(toy, ["a", "b", "c"], max_steps=2)
    assert [n.id for n in tree.nodes if n.successful] == [0, 1, 3, 4]
    assert [n.id for n in tree.nodes if n.golden] == [0, 1, 3]
    assert tree.reward == pytest.approx(2 / 3) and tree.credited == ["a", "b"] and tree.ended == "max_steps"


def test_a_failed_turn_ends_its_leaf_but_is_still_checked() -> None:
    # Step 1: L fails after meeting a: it is rewarded, becomes the root, and, being over, ends the search.
    toy = Toy(plan={("L", 1): ["a", "!"]})
    tree = search(toy, ["a", "b"])
    assert tree.nodes[1].over and tree.nodes[1].golden and tree.nodes[1].successful
    assert not tree.nodes[2].over  # pruned, not over
    assert tree.reward == 0.5 and tree.ended == "no_live_leaf" and tree.steps == 1
    assert toy.user_turns == ["#1"]


def test_a_failed_leaf_without_reward_is_never_continued() -> None:
    toy = Toy(plan={("L", 1): ["!"]})
    tree = search(toy, ["a"], max_steps=2)
    assert shape(tree) == {0: [1, 2], 2: [3, 4]}  # L is over: only R splits
    assert tree.nodes[1].over and [m.content for m in tree.nodes[1].messages] == ["L@1"]
    assert toy.agent_turns == ["L@1", "R@1", "RL@2", "RR@2"]


def test_the_search_ends_when_every_customer_hung_up() -> None:
    toy = Toy(hang_up={("L", 2), ("R", 2)})
    tree = search(toy, ["a"])
    assert tree.ended == "no_live_leaf" and tree.steps == 1
    assert tree.nodes[1].over and tree.nodes[2].over and len(tree.nodes) == 3


def test_a_customer_who_hangs_up_at_once_ends_the_tree_before_any_agent_turn() -> None:
    toy = Toy(hang_up={("", 1)})
    tree = search(toy, ["a"])
    assert tree.steps == 0 and len(tree.nodes) == 1 and tree.nodes[0].over and toy.agent_turns == []


def test_no_goals_run_one_step_as_the_reference_does() -> None:
    tree = search(Toy(), [])
    assert tree.steps == 1 and tree.reward == 0.0 and tree.ended == "all_goals"


def test_an_event_for_a_goal_already_credited_is_ignored() -> None:
    # A careless branch reports every goal it calls; LL calls a again after a was credited to L.
    toy = Toy(plan={("L", 1): ["a"], ("LL", 2): ["a", "b"]}, careless=True)
    tree = search(toy, ["a", "b"])
    assert tree.nodes[3].reward_events == ["b"] and tree.credited == ["a", "b"]


def test_the_leaves_of_a_step_run_at_once() -> None:
    # Each agent turn waits until every leaf of its step has started: one after another, it would time out.
    toy = Toy()

    async def go() -> Tree:
        root = ToyBranch(toy, ["a"])
        search = JoshSearch(SearchConfig(beam=8, max_steps=1))
        toy.gate, toy.expected = asyncio.Event(), 2
        return await search.run(root, ["a"])

    tree = asyncio.run(go())
    assert toy.started == 2 and tree.steps == 1


def test_sequential_leaves_run_one_after_another() -> None:
    running = 0
    most = 0

    class Slow(ToyBranch):
        def fork(self, count: int) -> list[ToyBranch]:
            return [Slow(self.toy, list(self.pending), self.path + "LR"[k], self.steps) for k in range(count)]

        async def agent_turn(self) -> ToyTurn:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            running -= 1
            return await super().agent_turn()

    async def go(sequential: bool) -> int:
        nonlocal most
        most = 0
        await JoshSearch(SearchConfig(max_steps=3, sequential=sequential)).run(Slow(Toy(), ["a"]), ["a"])
        return most

    assert asyncio.run(go(True)) == 1
    assert asyncio.run(go(False)) == 8  # the 8 leaves of step 3


def test_a_turn_that_raises_cancels_the_others_and_propagates() -> None:
    cancelled = []

    class Failing(ToyBranch):
        def fork(self, count: int) -> list[ToyBranch]:
            return [Failing(self.toy, [], self.path + "LR"[k]) for k in range(count)]

        async def agent_turn(self) -> ToyTurn:
            if self.path == "L":
                await asyncio.sleep(0)
                raise RuntimeError("the endpoint is gone")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(self.path)
                raise
            raise AssertionError("unreachable")

    with pytest.raises(RuntimeError, match="the endpoint is gone"):
        asyncio.run(JoshSearch().run(Failing(Toy(), []), ["a"]))
    assert cancelled == ["R"]


def test_a_customer_turn_that_meets_a_goal_is_credited_like_an_agent_turn() -> None:
    # "a" by L's agent (step 1); "b" by the customer of LR (its third turn: the opening, L#2, LR#3).
    toy = Toy(plan={("L", 1): ["a"]}, acts={("LR", 3): ["b"], ("LL", 4): ["b"]})
    tree = search(toy, ["a", "b"], beam=8)
    assert shape(tree) == {0: [1, 2], 1: [3, 4]}
    assert toy.agent_turns == ["L@1", "R@1", "LL@2", "LR@2"]
    assert toy.user_turns == ["#1", "L#2", "LL#3", "LR#3"]  # LL is pruned before its fourth turn
    assert tree.credited == ["a", "b"] and tree.reward == 1.0
    assert tree.ended == "all_goals" and tree.steps == 2
    assert [n.id for n in tree.nodes if n.golden] == [0, 1, 4]
    assert [n.id for n in tree.nodes if n.successful] == [0, 1, 4]
    lr = tree.nodes[4]
    assert lr.reward_events == ["b"] and [m.content for m in lr.messages] == ["LR@2", "LR#3"]
    # the customer's tool traffic is kept beside the agent's view, before the message it said after it
    [traffic] = lr.user_tool_turns
    assert traffic.before == 1 and [m.content for m in traffic.messages] == ["did b"]
    assert "user_tool_turns" in lr.model_dump() and "user_tool_turns" not in tree.nodes[3].model_dump()
    assert tree.golden_branch.path == "LR"


def test_the_first_customer_from_the_left_wins_and_both_are_successful() -> None:
    toy = Toy(acts={("L", 2): ["a"], ("R", 2): ["a"]})
    tree = search(toy, ["a", "b"], beam=8, max_steps=2)
    assert [n.id for n in tree.nodes if n.golden] == [0, 1]
    assert [n.id for n in tree.nodes if n.successful] == [0, 1, 2]
    assert tree.reward_events == ["a", "a"] and tree.credited == ["a"]
    assert shape(tree) == {0: [1, 2], 1: [3, 4]}  # R is pruned: only L's line goes on
    assert tree.reward == 0.5 and tree.ended == "max_steps"


def test_a_customer_opening_that_meets_every_goal_ends_the_tree_at_once() -> None:
    toy = Toy(acts={("", 1): ["a"]})
    tree = search(toy, ["a"])
    assert toy.agent_turns == [] and tree.steps == 0 and tree.ended == "all_goals"
    assert tree.nodes[0].golden and tree.nodes[0].reward_events == ["a"] and tree.reward == 1.0
    # with one goal left, the search goes on from the rewarded root
    toy = Toy(acts={("", 1): ["a"]}, plan={("R", 1): ["b"]})
    tree = search(toy, ["a", "b"])
    assert tree.credited == ["a", "b"] and [n.id for n in tree.nodes if n.golden] == [0, 2]


def test_finish_plays_the_golden_leaf_on_alone_until_the_customer_ends() -> None:
    toy = Toy(plan={("L", 1): ["a"]}, hang_up={("L", 3)})
    tree = search(toy, ["a"], finish=True)
    assert shape(tree) == {0: [1, 2]}  # no branching once every goal is met
    assert toy.agent_turns == ["L@1", "R@1", "L@2"] and toy.user_turns == ["#1", "L#2", "L#3"]
    assert [m.content for m in tree.nodes[1].messages] == ["L@1", "L#2", "L@2", "L#3"]
    assert tree.nodes[1].over and tree.ended == "all_goals" and tree.steps == 2 and tree.reward == 1.0
    assert tree.golden_branch.said == 3  # the golden conversation as it ended

    # without finish (the paper's search), the tree stops at the goal
    toy = Toy(plan={("L", 1): ["a"]}, hang_up={("L", 3)})
    tree = search(toy, ["a"])
    assert [m.content for m in tree.nodes[1].messages] == ["L@1"] and tree.steps == 1

    # finishing shares the step budget: the conversation is cut where the steps run out
    toy = Toy(plan={("L", 1): ["a"]})
    tree = search(toy, ["a"], finish=True, max_steps=3)
    assert tree.steps == 3 and tree.ended == "all_goals" and not tree.nodes[1].over
    assert toy.agent_turns == ["L@1", "R@1", "L@2", "L@3"]


def test_the_branchs_preamble_opens_the_root() -> None:
    toy = Toy()
    root = ToyBranch(toy, ["a"], preamble=[AssistantMessage(content="Hi! How can I help?")])
    tree = asyncio.run(JoshSearch(SearchConfig(max_steps=1)).run(root, ["a"]))
    assert [m.content for m in tree.nodes[0].messages] == ["Hi! How can I help?", "#1"]


def saved(*links: tuple[int, int | None], golden: tuple[int, ...] = ()) -> list[NodeRecord]:
    return [NodeRecord(id=i, parent=p, golden=i in golden) for i, p in links]


@pytest.mark.parametrize(
    ("nodes", "problem"),
    [
        (saved((0, None), (1, 0), (1, 0)), "node id 1 appears twice"),
        (saved((0, None), (1, 1)), "node 1 is its own parent"),
        (saved((0, 0)), "node 0 is its own parent"),
        (saved((0, 5), (5, None)), "the first node, 0, has a parent (5): a tree starts at its root"),
        (saved((0, None), (1, 9)), "node 1 has parent 9, which is not in the tree"),
        (saved((0, None), (1, 2), (2, 1)), "node 1 has parent 2, which comes after it (a loop, or nodes out of order)"),
        (saved((0, None), (1, 0), (2, None)), "node 2 has no parent but is not the first node (a tree has one root, first)"),
        (
            saved((0, None), (1, 0), (2, 0), (3, 2), golden=(0, 1, 3)),
            "the golden path forks: golden nodes 1 and 3 are not on one path from the root",
        ),
    ],
)  # fmt: skip
def test_saved_nodes_that_are_no_tree_are_named(nodes: list[NodeRecord], problem: str) -> None:
    assert tree_problem(nodes) == problem


def test_the_trees_a_search_makes_are_trees() -> None:
    assert tree_problem([]) is None
    assert tree_problem(saved((0, None), (1, 0), (2, 0), (3, 2), golden=(0, 2, 3))) is None
    toy = Toy(plan={("LR", 2): ["a"], ("RL", 2): ["a", "b"], ("LRR", 3): ["b"]})
    tree = search(toy, ["a", "b"])
    assert sum(n.golden for n in tree.nodes) > 2 and tree_problem(tree.nodes) is None


def test_leaves_that_all_fail_leave_no_exception_unretrieved() -> None:
    """Both leaves raise: the first error propagates, and the other's is retrieved (asyncio would otherwise
    report "Task exception was never retrieved" when the task is collected)."""
    import gc

    reported: list[dict[str, object]] = []

    class BothFail(ToyBranch):
        def fork(self, count: int) -> list[ToyBranch]:
            return [BothFail(self.toy, [], self.path + "LR"[k]) for k in range(count)]

        async def agent_turn(self) -> ToyTurn:
            raise RuntimeError(f"leaf {self.path} failed")

    async def go() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        try:
            await JoshSearch().run(BothFail(Toy(), []), ["a"])
        except RuntimeError as exc:
            message = str(exc)  # the exception (and the failed tasks it holds) dropped after this block
        gc.collect()
        return message

    assert asyncio.run(go()) == "leaf L failed"
    assert reported == []


def test_a_single_leaf_runs_in_the_search_s_own_task() -> None:
    """One live leaf (beam 1, or the golden path after a collapse) is awaited directly: no task of its own,
    and its error propagates as is."""
    seen: list[object] = []

    class Alone(ToyBranch):
        async def agent_turn(self) -> ToyTurn:
            seen.append(asyncio.current_task())
            raise ValueError("alone")

    async def go() -> None:
        seen.append(asyncio.current_task())
        await JoshSearch(SearchConfig(beam=1)).run(Alone(Toy(), []), ["a"])

    with pytest.raises(ValueError, match="alone"):
        asyncio.run(go())
    assert len(seen) == 2 and seen[0] is seen[1]
