"""One harvested tree as HTML: nested boxes, one card per node, golden path highlighted, pruned branches greyed.

Nodes come in creation order (a parent before its children, left before right). Each card carries
`data-node` (its id) and `data-parent`; the page's script shows the conversation along the path from the
first root to the card clicked, from the hidden `data-body` blocks that hold each node's messages in full.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from josh.search.tree import NodeRecord, TreeRecord
from josh.types import AssistantMessage
from josh.view.text import (
    KIND_LABELS,
    KIND_MARKS,
    NOTE_CHARS,
    customer_calls_html,
    esc,
    esc_text,
    message_html,
    preview,
    text_block,
    turn_kind,
    turn_preview,
)

GOLDEN, PRUNED, OPEN = "golden", "pruned", "open"
MAX_CARD_TURNS = 8  # turn lines shown on a card; the rest are counted ("+3 more")


@dataclass
class TreeShape:
    """How a tree's nodes hang together and what became of each.

    `state` per node: `golden` (on the kept conversation), `pruned` (on a branch cut when another leaf met
    a goal first), or `open` (after the last reward: explored, but no goal was met there). `roots` are the
    nodes without a known parent (normally only the first root).
    """

    nodes: dict[int, NodeRecord]
    children: dict[int, list[int]] = field(default_factory=dict)
    roots: list[int] = field(default_factory=list)
    state: dict[int, str] = field(default_factory=dict)
    duplicates: int = 0  # nodes whose id came twice (the first one is kept)

    def counts(self) -> Counter[str]:
        return Counter(self.state.values())


def tree_shape(nodes: list[NodeRecord]) -> TreeShape:
    """The shape of a tree from its node records. A node whose parent has not come before it (a damaged
    record: `josh.search.tree_problem` names it) is drawn as a root of its own, so the drawing never loops."""
    shape = TreeShape(nodes={})
    for node in nodes:
        if node.id in shape.nodes:
            shape.duplicates += 1
            continue
        # Look for the parent before adding the node: a node that is its own parent must not become its child.
        if node.parent is not None and node.parent in shape.nodes:
            shape.children[node.parent].append(node.id)
        else:
            shape.roots.append(node.id)
        shape.nodes[node.id] = node
        shape.children[node.id] = []
    golden = [i for i, n in shape.nodes.items() if n.golden]
    # The search goes on from the last rewarded node: what lies under it was never pruned, only not rewarded.
    anchor = golden[-1] if golden else (shape.roots[0] if shape.roots else None)
    kept: set[int] = set()
    stack = [anchor] if anchor is not None else []
    while stack:
        current = stack.pop()
        kept.add(current)
        stack.extend(shape.children[current])
    for node_id, node in shape.nodes.items():
        shape.state[node_id] = GOLDEN if node.golden else OPEN if node_id in kept else PRUNED
    return shape


def _card(node: NodeRecord, state: str) -> str:
    classes = ["card", state]
    if node.successful:
        classes.append("successful")
    if node.over:
        classes.append("over")
    if node.reward_events:
        classes.append("rewarded")
    parent = "" if node.parent is None else f' data-parent="{node.parent}"'
    head = [f'<span class="id">#{node.id}</span>']
    head += [
        f'<span class="reward" title="goal met here">★ {esc(event)}</span>' for event in node.reward_events
    ]
    if node.over:
        head.append('<span class="end" title="the conversation ended here">ended</span>')
    customer_calls = sum(
        len(m.tool_calls)
        for turn in node.user_tool_turns
        for m in turn.messages
        if isinstance(m, AssistantMessage)
    )
    if customer_calls:
        head.append(
            f'<span class="phone" title="the customer\'s own tool calls, which the agent does not see">'
            f"☎ {customer_calls}</span>"
        )
    if node.notes:
        notes = "; ".join(node.notes)
        head.append(
            f'<span class="note" title="{esc(preview(notes, NOTE_CHARS))}">⚠ {len(node.notes)}</span>'
        )
    lines = []
    for message in node.messages[:MAX_CARD_TURNS]:
        kind = turn_kind(message)
        lines.append(
            f'<div class="turn {kind}" title="{esc(KIND_LABELS[kind])}"><b>{KIND_MARKS[kind]}</b>'
            f"{esc_text(turn_preview(message))}</div>"
        )
    if len(node.messages) > MAX_CARD_TURNS:
        lines.append(f'<div class="more">+{len(node.messages) - MAX_CARD_TURNS} more</div>')
    return (
        f'<div class="{" ".join(classes)}" data-node="{node.id}"{parent} data-state="{state}" tabindex="0">'
        f'<div class="head">{"".join(head)}</div>{"".join(lines)}</div>'
    )


def _branches(shape: TreeShape, top: list[int]) -> str:
    """Nested lists of cards, built without recursion (a chain of a thousand nodes must not overflow)."""
    out: list[str] = ["<ul>"]
    stack: list[int | str] = list(reversed(top))  # node ids to open, and closing tags to write
    while stack:
        node_id = stack.pop()
        if isinstance(node_id, str):
            out.append(node_id)
            continue
        state = shape.state[node_id]
        out.append(f'<li class="{state}">{_card(shape.nodes[node_id], state)}')
        kids = shape.children[node_id]
        stack.append("</li>")
        if kids:
            stack.append("</ul>")
            stack.extend(reversed(kids))
            out.append("<ul>")
    out.append("</ul>")
    return "".join(out)


def _goal_list(goals: list[str], met: list[str], what: str) -> str:
    left = Counter(met)
    items = []
    for goal in goals:
        done = left[goal] > 0
        left[goal] -= done
        items.append(f'<li class="{"met" if done else "unmet"}">{"✓" if done else "✗"} {esc(goal)}</li>')
    return f'<ul class="goals" title="{esc(what)}">{"".join(items) or "<li>(none)</li>"}</ul>'


def _body(node: NodeRecord) -> str:
    """A node's messages in full, with the customer's own tool traffic before the line it then said."""
    before: dict[int, list[str]] = {}
    for turn in node.user_tool_turns:
        before.setdefault(turn.before, []).append(customer_calls_html(turn.messages))
    parts = []
    for index, message in enumerate(node.messages):
        parts += before.pop(index, [])
        parts.append(message_html(message))
    for index in sorted(before):  # a turn that said nothing after its calls (it failed or kept calling)
        parts += before[index]
    return "".join(parts)


def render_tree(tree: TreeRecord) -> str:
    """The HTML of one tree: its facts, goals, the drawing, and the hidden full messages of every node (the
    system prompt, the same for most trees of a file, is left to the page, which shows it once)."""
    shape = tree_shape(tree.nodes)
    counts = shape.counts()
    successful = sum(n.successful for n in shape.nodes.values())
    reward = "error" if tree.reward is None else f"{tree.reward:.2f}"
    trial = f" · trial {tree.trial}" if tree.trial else ""
    usage = tree.agent_usage + tree.user_usage
    facts = [
        f"reward <b>{esc(reward)}</b>",
        f"{len(shape.nodes)} nodes",
        f'<span class="golden-text">{counts[GOLDEN]} golden</span>',
        f"{successful} successful",
        f'<span class="pruned-text">{counts[PRUNED]} pruned</span>',
        f"{counts[OPEN]} after the last reward",
        f"{tree.steps} step{'' if tree.steps == 1 else 's'}",
        f"ended: {esc(tree.ended or 'n/a')}",
        f"agent {esc(tree.agent or 'n/a')}",
        f"{usage.total_tokens:,} tokens",
        f"{tree.latency_s:.1f} s",
    ]
    parts = [
        f'<article class="tree-view" data-kind="tree" data-task="{esc(tree.task_id)}" '
        f'data-nodes="{len(shape.nodes)}">',
        f"<h2>{esc(tree.task_id)}{trial}</h2>",
        f'<p class="facts">{" · ".join(facts)}</p>',
        '<div class="goal-row"><div><h4>goals credited on the golden path</h4>',
        _goal_list(tree.goal_calls, tree.golden_reward_events, "credited"),
        "</div><div><h4>goals met on any branch</h4>",
        _goal_list(tree.goal_calls, tree.reward_events, "met on a branch"),
        "</div></div>",
    ]
    if tree.error:
        parts.append(f'<div class="error-box"><b>error</b>{text_block(tree.error)}</div>')
    if tree.notes:
        parts.append(
            '<ul class="notes">'
            + "".join(f"<li>{esc(preview(n, NOTE_CHARS))}</li>" for n in tree.notes)
            + "</ul>"
        )
    phone = any(n.user_tool_turns for n in shape.nodes.values())
    if shape.duplicates:
        parts.append(f'<p class="warn">{shape.duplicates} node(s) with an id seen before were left out</p>')
    parts.append(
        '<p class="legend"><span class="turn customer"><b>C</b>customer</span>'
        '<span class="turn agent"><b>A</b>agent</span><span class="turn call"><b>→</b>agent calls a tool</span>'
        '<span class="turn tool"><b>T</b>tool result</span><span class="card golden">golden path</span>'
        '<span class="card successful">successful</span><span class="card pruned">pruned</span>'
        '<span class="reward">★ goal met</span>'
        + ('<span class="phone">☎ the customer\'s own tool calls</span>' if phone else "")
        + " Click a node to read the conversation up to it.</p>"
    )
    tools = ['<label>zoom <select class="zoom">']
    tools += [
        f'<option value="{z}"{" selected" if z == 100 else ""}>{z}%</option>' for z in (100, 75, 50, 35)
    ]
    tools.append("</select></label>")
    if counts[PRUNED]:
        tools.append(
            f'<label><input type="checkbox" class="hide-pruned"> hide pruned branches ({counts[PRUNED]} nodes)</label>'
        )
    parts.append(f'<p class="tree-tools">{" ".join(tools)}</p>')
    parts.append(f'<div class="tree-scroll"><div class="tree">{_branches(shape, shape.roots)}</div></div>')
    parts.append('<section class="path"><h3>conversation</h3><div class="path-body"></div></section>')
    parts.append('<div class="bodies" hidden>')
    for node_id, node in shape.nodes.items():
        body = _body(node) or '<p class="empty">(no messages)</p>'
        parts.append(f'<div data-body="{node_id}">{body}</div>')
    parts.append("</div></article>")
    return "".join(parts)


def system_prompt_html(prompt: str) -> str:
    """The agent's system prompt, collapsed: it opens every conversation of a tree."""
    return (
        f'<details class="msg system"><summary>agent system prompt ({len(prompt):,} characters)</summary>'
        f"{text_block(prompt)}</details>"
    )
