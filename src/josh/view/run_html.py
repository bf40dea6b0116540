"""One evaluated conversation as HTML: what was said, the tool calls of each agent turn, rewards, failures."""

from __future__ import annotations

from collections import Counter

from josh.rollout.record import CallResult, RolloutRecord
from josh.types import AssistantMessage, UserMessage
from josh.view.text import NOTE_CHARS, call_html, esc, message_html, preview, text_block


def failed_first(rollouts: list[RolloutRecord]) -> list[RolloutRecord]:
    """Conversations in the order a reader wants them: errors, then the lowest rewards, then task and trial."""
    return sorted(
        rollouts,
        key=lambda r: (r.status == "success", r.reward if r.reward is not None else -1.0, r.task_id, r.trial),
    )


def is_failed(rollout: RolloutRecord) -> bool:
    """An error, or a reward below 1.0 (not every goal call met)."""
    return rollout.status != "success" or rollout.reward is None or rollout.reward < 1.0


def _call_html(call: CallResult, by_customer: bool = False) -> str:
    return call_html(call.name, call.arguments, call.result, call.rewards, by_customer)


def _conversation(rollout: RolloutRecord) -> str:
    """The transcript with each agent turn's tool calls before what the agent then said, and the customer's
    own calls (where it has tools) before what it then said. Calls carry the number of agent turns before
    them; a greeting the agent spoke before the customer's first line is no agent turn. Calls past the last
    message of their side, as when a turn failed, close the transcript."""
    by_turn: dict[int, list[CallResult]] = {}
    for call in rollout.calls:
        by_turn.setdefault(call.turn, []).append(call)
    by_customer_turn: dict[int, list[CallResult]] = {}
    for call in rollout.user_calls:
        by_customer_turn.setdefault(call.turn, []).append(call)
    parts = []
    agent_turns = customer_turns = 0
    for message in rollout.messages:
        if isinstance(message, UserMessage):
            parts += [_call_html(call, True) for call in by_customer_turn.pop(customer_turns, [])]
            customer_turns += 1
        elif isinstance(message, AssistantMessage) and customer_turns:
            parts += [_call_html(call) for call in by_turn.pop(agent_turns, [])]
            agent_turns += 1
        parts.append(message_html(message))
    for left in sorted(set(by_turn) | set(by_customer_turn)):  # customer turn k comes before agent turn k
        parts += [_call_html(call, True) for call in by_customer_turn.get(left, [])]
        parts += [_call_html(call) for call in by_turn.get(left, [])]
    return "".join(parts) or '<p class="empty">(no messages)</p>'


def render_rollout(rollout: RolloutRecord) -> str:
    """The HTML of one conversation: facts, goals met and failed, error, notes, the transcript with tool
    calls and their rewards, and the agent's internal view (collapsed)."""
    reward = "error" if rollout.reward is None else f"{rollout.reward:.2f}"
    trial = f" · trial {rollout.trial}" if rollout.trial else ""
    usage = rollout.agent_usage + rollout.user_usage
    facts = [
        f"reward <b>{esc(reward)}</b>",
        f"status {esc(rollout.status)}",
        f"ended: {esc(rollout.termination)}",
        f"{len(rollout.calls)} tool calls",
        *([f"{len(rollout.user_calls)} customer's own calls"] if rollout.user_calls else []),
        f"{rollout.agent_model_calls} agent and {rollout.user_model_calls} customer model calls",
        f"{usage.total_tokens:,} tokens",
        f"{rollout.latency_s:.1f} s",
    ]
    if rollout.status != "success":
        facts.insert(1, f"partial reward {rollout.partial_reward:.2f}")
    failed = Counter(rollout.failed_goals)
    goals = []
    for goal in rollout.goal_calls:
        missed = failed[goal] > 0
        failed[goal] -= missed
        goals.append(f'<li class="{"unmet" if missed else "met"}">{"✗" if missed else "✓"} {esc(goal)}</li>')
    state = "failed" if is_failed(rollout) else "passed"
    parts = [
        f'<article class="run-view {state}" data-kind="run" data-task="{esc(rollout.task_id)}">',
        f"<h2>{esc(rollout.task_id)}{trial}</h2>",
        f'<p class="facts">{" · ".join(facts)}</p>',
        '<div class="goal-row"><div><h4>goal calls</h4>',
        f'<ul class="goals">{"".join(goals) or "<li>(none)</li>"}</ul></div>',
        "<div><h4>reward events, in order</h4>",
        '<ul class="goals">'
        + ("".join(f'<li class="met">★ {esc(e)}</li>' for e in rollout.reward_events) or "<li>(none)</li>")
        + "</ul></div></div>",
    ]
    if rollout.error:
        parts.append(f'<div class="error-box"><b>error</b>{text_block(rollout.error)}</div>')
    if rollout.notes:
        parts.append(
            '<ul class="notes">'
            + "".join(f"<li>{esc(preview(n, NOTE_CHARS))}</li>" for n in rollout.notes)
            + "</ul>"
        )
    failed_calls = [c for c in rollout.model_calls if c.error]
    if failed_calls:
        parts.append(
            '<ul class="notes">'
            + "".join(
                f"<li>{esc(c.role)} model call failed: {esc(preview(c.error or '', NOTE_CHARS))}</li>"
                for c in failed_calls
            )
            + "</ul>"
        )
    parts.append(f'<section class="path"><h3>conversation</h3>{_conversation(rollout)}</section>')
    if rollout.internal:
        parts.append(
            f'<details class="internal"><summary>the agent\'s internal view ({len(rollout.internal)} messages: '
            "plans, calls and results as the agent saw them)</summary>"
            + "".join(message_html(m) for m in rollout.internal)
            + "</details>"
        )
    parts.append("</article>")
    return "".join(parts)
