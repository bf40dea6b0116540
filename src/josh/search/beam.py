"""JOSH: a beam of conversations that splits while the beam allows and collapses onto the first success.

The paper's algorithm (josh-train 0.1.4, `JOSH.step`), on any `Branch`:

- The customer opens once, at the root (after the branch's `preamble`: an agent that greets first). Then, at most `max_steps` times: expand, one agent turn on every
  live leaf, the reward check, and if goals remain, one customer turn on every live leaf.
- Expand: the live leaves are the nodes without children whose conversation is not over. When twice their
  number is at most `beam`, each gets two children; otherwise none does, and each leaf goes on alone (its
  later turns are added to the same node).
- Reward check: the goals met by the calls of each leaf's turn, among the goals still pending. A leaf whose
  turn failed is over, but is checked all the same. A customer with tools of its own (tau2's telecom
  customer, acting on its phone) can meet goals too: its turns, the opening included, are checked the
  same way (ToolWOZ's customer only talks, so its trees are the paper's).
- On a reward: every rewarded leaf and its ancestors up to the current root are marked successful; the
  first rewarded leaf, left to right, becomes the new root and its path golden; only its goals leave the
  pending set. The other branches are pruned: kept in the tree, never continued.
- Done when no goal is pending, no live leaf is left, or after `max_steps` steps. Reward: credited goals /
  goals.

With `finish`, once every goal is met the golden leaf plays on alone (no more branching) until the customer
ends the conversation or the steps run out, so its closing turns are kept (tau2 scores what the agent tells
the customer); the paper's search stops at the last goal.

Unlike the reference, the leaves of a step run concurrently (`sequential` steps them one after another),
and the tree grown after the last reward is kept too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from josh.search.beam_config import SearchConfig
from josh.search.protocol import Branch
from josh.search.tree import Ending, Node, Tree, UserToolTurn

T = TypeVar("T")


class JoshSearch:
    """Grows one JOSH tree per `run`."""

    def __init__(self, config: SearchConfig | None = None) -> None:
        self.config = config or SearchConfig()

    async def run(self, root: Branch, goals: Sequence[str]) -> Tree:
        """Search from `root` (a conversation not yet begun) until `goals` are met or the search ends.

        A turn that raises propagates (the branch turns the failures that belong to the simulation into an
        outcome that is `over`); the leaves still running are cancelled first.
        """
        return await _Search(self.config, root, list(goals)).run()


class _Search:
    def __init__(self, config: SearchConfig, branch: Branch, goals: list[str]) -> None:
        self.config = config
        self.goals = goals
        self.pending = list(goals)
        self.credited: list[str] = []
        self.events: list[str] = []
        self.golden_branch: Any = None  # the branch of the last credited leaf (its conversation as it ends)
        self.nodes: list[Node] = []
        self.root = self._node(None, branch)
        self.steps = 0

    def _node(self, parent: Node | None, branch: Branch) -> Node:
        node = Node(id=len(self.nodes), parent=parent, branch=branch)
        self.nodes.append(node)
        if parent is not None:
            parent.children.append(node)
        return node

    async def run(self) -> Tree:
        self.root.messages.extend(self.root.branch.preamble)
        opening = await self.root.branch.user_turn()
        # The customer's opening may meet goals too (a customer acting on its phone before anything is said).
        done = bool(self._settle([self.root], [opening], self._add_user_turn)) and not self.pending
        finish = self.config.finish
        for _ in range(self.config.max_steps):
            if done and not finish:
                break
            if not done:  # once every goal is met, the golden leaf plays on alone
                self._expand()
            live = self.root.live_leaves()
            if not live:
                break
            self.steps += 1
            self._settle(live, await self._each(live, _agent_turn), self._add_agent_turn)
            done = done or not self.pending
            if done and not finish:
                break
            live = self.root.live_leaves()
            if not live:
                break
            self._settle(live, await self._each(live, _user_turn), self._add_user_turn)
            done = done or not self.pending
        if done:
            ending: Ending = "all_goals"
        else:
            ending = "max_steps" if self.root.live_leaves() else "no_live_leaf"
        total = len(self.goals)
        return Tree(
            nodes=[node.record() for node in self.nodes],
            goals=self.goals,
            credited=self.credited,
            reward_events=self.events,
            steps=self.steps,
            reward=len(self.credited) / total if total else 0.0,
            ended=ending,
            golden_branch=self.golden_branch,
        )

    def _expand(self) -> None:
        live = self.root.live_leaves()
        if not live or 2 * len(live) > self.config.beam:
            return
        for leaf in live:
            for branch in leaf.branch.fork(2):
                self._node(leaf, branch)
            leaf.branch = None  # its children carry the conversation on

    def _add_agent_turn(self, node: Node, outcome: Any) -> None:
        node.messages.extend(outcome.messages)
        node.notes.extend(outcome.notes)
        if outcome.over:
            self._end(node)

    def _add_user_turn(self, node: Node, outcome: Any) -> None:
        if outcome.tool_messages:
            turn = UserToolTurn(before=len(node.messages), messages=list(outcome.tool_messages))
            node.user_tool_turns.append(turn)
        node.messages.extend(outcome.messages)
        node.notes.extend(outcome.notes)
        if outcome.done:
            self._end(node)

    def _settle(
        self, nodes: list[Node], outcomes: Sequence[Any], add: Callable[[Node, Any], None]
    ) -> list[str]:
        """Add one turn's outcome to every node (`add`), then the reward check: a node whose turn (the
        agent's or the customer's) met pending goals is rewarded, and the first rewarded one, left to right,
        becomes the root. A node whose turn ended its conversation is over, and checked all the same.
        Returns the goals credited."""
        branches = [node.branch for node in nodes]  # before a turn that ended the conversation ends the node
        rewarded: list[tuple[Node, list[str], Any]] = []
        for node, outcome, branch in zip(nodes, outcomes, branches, strict=True):
            add(node, outcome)
            met = _met(self.pending, outcome.reward_events)
            node.reward_events.extend(met)
            self.events.extend(met)
            if met:
                rewarded.append((node, met, branch))
        if not rewarded:
            return []
        for node, _, _ in rewarded:
            for on_path in node.up_to(self.root):
                on_path.successful = True
        first, met, self.golden_branch = rewarded[0]
        for on_path in first.up_to(self.root):
            on_path.golden = True
        for goal in met:
            self.pending.remove(goal)
        self.credited.extend(met)
        for node in nodes:
            if node is not first:
                node.branch = None  # pruned: kept in the tree, never continued
        self.root = first
        return met

    @staticmethod
    def _end(node: Node) -> None:
        node.over = True
        node.branch = None

    async def _each(self, nodes: list[Node], turn: Callable[[Node], Awaitable[T]]) -> list[T]:
        """`turn` on every node, concurrently (or one after another with `sequential`), results in order.
        The first exception cancels the turns still running and is raised."""
        if self.config.sequential or len(nodes) == 1:  # one leaf (the golden path's): no task to wait for
            return [await turn(node) for node in nodes]
        tasks = [asyncio.ensure_future(turn(node)) for node in nodes]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
            return [task.result() for task in tasks]
        finally:
            # Each pass through the event loop waits behind every other tree's ready work: wait only for the
            # turns still running (after a failure), not for finished ones (two passes a step, each _each).
            running = []
            for task in tasks:
                if not task.done():
                    task.cancel()
                    running.append(task)
                elif not task.cancelled():
                    task.exception()  # retrieved: no "exception was never retrieved" at exit
            if running:
                await asyncio.gather(*running, return_exceptions=True)


def _agent_turn(node: Node) -> Awaitable[Any]:
    return node.branch.agent_turn()


def _user_turn(node: Node) -> Awaitable[Any]:
    return node.branch.user_turn()


def _met(pending: list[str], events: Sequence[str]) -> list[str]:
    """The `events` that meet goals still pending, each pending goal at most once."""
    left = list(pending)
    met = []
    for event in events:
        if event in left:
            left.remove(event)
            met.append(event)
    return met
