"""The agent's system prompt on tau2: tau2's own text around the domain policy (`--prompts tau2`, read from the
installed package) or josh's wording (`--prompts josh`). The customer always gets tau2's prompt (the task's)."""

from __future__ import annotations

from josh.envs.tau2.reference_text import tau2_agent_system_prompt

# josh's wording of the agent's instructions (--prompts josh); {policy} is the domain policy.
JOSH_AGENT_PROMPT = """You are a customer service agent. Help the customer, following the policy below to the letter.
Each turn, do one thing: write one message to the customer, or make one tool call (arguments as a JSON object).

<policy>
{policy}
</policy>"""


def agent_system_prompt(prompts: str, policy: str) -> str:
    """The agent's system prompt: tau2's own text around the policy, or josh's wording."""
    if prompts == "tau2":
        return tau2_agent_system_prompt(policy)
    return JOSH_AGENT_PROMPT.replace("{policy}", policy)
