"""What josh's scripted mock plays on a tau2 task (dry runs, `josh serve-mock --benchmark tau2`, the scripted
customer of `josh.gym`)."""

from __future__ import annotations

from josh.envs.tau2 import Tau2Task
from josh.envs.tau2.data_model import STOP_TOKENS
from josh.mock.policies import MockCall, MockScript


def _pieces(text: str, count: int = 3) -> tuple[str, ...]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    size = max(1, -(-len(lines) // count))
    return tuple(" ".join(lines[i : i + size]) for i in range(0, len(lines), size))


def tau2_script(task: Tau2Task) -> MockScript:
    """What josh's scripted mock plays on a tau2 task: the agent's goal actions in order, then the facts the
    task wants communicated; the customer answers tau2's prompt with its scenario, a piece a turn, and ends
    with tau2's stop token once the agent is done. The customer's own goal actions (telecom's phone) are
    its tool calls, in the ground truth's order: each run of them comes after the agent's actions before it
    (the agent hands over), and the agent's next actions after them."""
    calls: list[MockCall] = []
    customer: list[tuple[int, tuple[MockCall, ...]]] = []
    for goal in task.goal_actions:
        call = MockCall(goal.name, dict(goal.arguments))
        if goal.requestor == "assistant":
            calls.append(call)
        elif customer and customer[-1][0] == len(calls):  # the same run of the customer's actions
            customer[-1] = (len(calls), (*customer[-1][1], call))
        else:
            customer.append((len(calls), (call,)))
    return MockScript(
        task_id=task.task_id,
        agent_calls=tuple(calls),
        customer_lines=_pieces(task.user_instructions),
        goal_text=task.user_instructions,
        closing=" ".join(task.communicate_info),
        customer_prompt=task.user_system_prompt,
        stop=STOP_TOKENS[0],
        # the oracle makes two calls a turn, and hands over for each run of the customer's actions: the
        # customer waits for all of them
        patience=len(calls) + len(customer) + 2,
        customer_actions=tuple(customer),
    )
