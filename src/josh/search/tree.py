"""The JOSH tree: nodes as the search grows them, and the records a harvest writes.

A node holds only the messages it adds to the agent's view (its agent turns, then the customer's replies),
plus a link to its parent: a leaf's whole conversation is the messages on its path from the first root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt

from josh.types import Message, ModelCall, Record, Reward, Usage, omitted_when_empty

Ending = Literal["all_goals", "no_live_leaf", "max_steps"]


@dataclass(eq=False)
class Node:
    """A node of a growing tree. `branch` is the live conversation behind a leaf (None once it has children,
    has ended, or was pruned: only leaves that may still go on keep their branch)."""

    id: int
    parent: Node | None
    branch: Any = None
    messages: list[Message] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    successful: bool = False
    golden: bool = False
    over: bool = False
    reward_events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    user_tool_turns: list[UserToolTurn] = field(default_factory=list)

    def live_leaves(self) -> list[Node]:
        """The leaves under this node (itself included) whose conversation is not over, left to right."""
        found: list[Node] = []
        stack = [self]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(reversed(node.children))
            elif not node.over:
                found.append(node)
        return found

    def up_to(self, ancestor: Node) -> list[Node]:
        """This node and its ancestors up to `ancestor` (included), nearest first."""
        path: list[Node] = []
        node: Node | None = self
        while node is not None:
            path.append(node)
            if node is ancestor:
                return path
            node = node.parent
        raise ValueError(f"node {ancestor.id} is not an ancestor of node {self.id}")

    def record(self) -> NodeRecord:
        return NodeRecord(
            id=self.id,
            parent=self.parent.id if self.parent is not None else None,
            messages=list(self.messages),
            successful=self.successful,
            golden=self.golden,
            reward_events=list(self.reward_events),
            over=self.over,
            notes=list(self.notes),
            user_tool_turns=list(self.user_tool_turns),
        )


class UserToolTurn(Record):
    """The customer's own tool traffic in one of its turns (tau2's telecom customer acting on its phone):
    its calls and their results as the customer saw them, which the agent never sees."""

    before: int  # the index in the node's `messages` of the customer message said after it (== its length
    # when the turn said nothing: it failed or kept calling tools)
    messages: list[Message] = Field(default_factory=list)


class NodeRecord(Record):
    """A node as saved. Nodes are listed in creation order: a node's children follow it, left before right."""

    # Strict types: a saved mark or link is read as written (`"golden": "no"` is an error, not True).
    id: StrictInt
    parent: StrictInt | None  # None for the tree's first root
    messages: list[Message] = Field(default_factory=list)  # what this node added to the agent's view
    successful: StrictBool = False  # on the path from a root to a leaf whose turn (either side's) met a goal
    golden: StrictBool = False  # on the path of the leaves that were credited (the conversation kept)
    # goals met by this node's turns: the agent's calls, and the customer's own where it has tools
    reward_events: list[str] = Field(default_factory=list)
    over: StrictBool = False  # its conversation ended here (the customer hung up, or a turn failed)
    notes: list[str] = Field(default_factory=list)
    # The customer's own tool traffic on this node, turn by turn. Left out of dumps when empty, so the trees
    # of environments whose customers have no tools (ToolWOZ) do not change.
    user_tool_turns: list[UserToolTurn] = Field(default_factory=list, exclude_if=omitted_when_empty)


class Tree(Record):
    """What a search returns: every node it made (pruned branches and the part after the last reward too)."""

    nodes: list[NodeRecord]
    goals: list[str]
    credited: list[str] = Field(default_factory=list)  # goals met on the golden path, in the order met
    reward_events: list[str] = Field(default_factory=list)  # goals met on any leaf, in the order seen
    steps: int = 0  # steps run (each: one agent turn on every live leaf)
    reward: Reward = 0.0  # credited goals / goals
    ended: Ending = "max_steps"
    # The live conversation of the last credited leaf (None when nothing was credited), for a caller that
    # scores it in its environment's own terms; never saved.
    golden_branch: Any = Field(default=None, exclude=True)


class TreeRecord(Record):
    """One harvested tree: the line a harvest run file holds for one (task, trial)."""

    task_id: str
    trial: int = 0
    seed: int | None = None
    status: Literal["success", "error"]
    reward: Reward | None  # credited goals / goal calls; None when the task failed outside the search
    goal_calls: list[str] = Field(default_factory=list)
    reward_events: list[str] = Field(default_factory=list)  # goals met on any branch, in the order seen
    golden_reward_events: list[str] = Field(default_factory=list)  # the credited ones, in order
    domains: list[str] = Field(default_factory=list)  # the benchmark's domains the task belongs to
    # The benchmark's own score of the golden leaf's conversation as it stands, where it has one beside the
    # goals (tau2: its evaluator, which also checks the database and what was communicated); else None.
    final_reward: Reward | None = None
    system_prompt: str = ""  # the agent's system prompt, which comes before every node's messages
    tools: list[dict[str, Any]] = Field(default_factory=list)  # tool schemas given to the model (fc)
    agent: str = ""
    nodes: list[NodeRecord] = Field(default_factory=list)
    steps: int = 0
    ended: Ending | None = None
    agent_usage: Usage = Field(default_factory=Usage)
    user_usage: Usage = Field(default_factory=Usage)
    model_calls: list[ModelCall] = Field(default_factory=list)
    latency_s: float = 0.0
    error: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.trial)


def tree_problem(nodes: Sequence[NodeRecord]) -> str | None:
    """Why `nodes` do not form a tree as a harvest writes it, or None. A tree lists its nodes in creation
    order: ids are unique, the first node is the only root, every other node's parent is an earlier node
    (so no node is its own parent and no parent links loop), and the golden nodes lie on one path from
    the root (the golden path never forks). Every reader of saved trees checks this before walking them."""
    position_of: dict[int, int] = {}
    for position, node in enumerate(nodes):
        if node.id in position_of:
            return f"node id {node.id} appears twice"
        position_of[node.id] = position
    for position, node in enumerate(nodes):
        parent = node.parent
        if parent is None:
            if position:
                return f"node {node.id} has no parent but is not the first node (a tree has one root, first)"
        elif parent == node.id:
            return f"node {node.id} is its own parent"
        elif position == 0:
            return f"the first node, {node.id}, has a parent ({parent}): a tree starts at its root"
        elif parent not in position_of:
            return f"node {node.id} has parent {parent}, which is not in the tree"
        elif position_of[parent] > position:
            return f"node {node.id} has parent {parent}, which comes after it (a loop, or nodes out of order)"
    golden = [node for node in nodes if node.golden]
    if golden:
        by_id = {node.id: node for node in nodes}
        on_path: set[int] = set()
        step: NodeRecord | None = golden[-1]  # the deepest, if they form one path: parents come first
        while step is not None:
            on_path.add(step.id)
            step = by_id[step.parent] if step.parent is not None else None
        astray = next((node for node in golden if node.id not in on_path), None)
        if astray is not None:
            return (
                f"the golden path forks: golden nodes {astray.id} and {golden[-1].id} are not on one path "
                "from the root"
            )
    return None
