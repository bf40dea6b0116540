"""tau2 tasks of one domain: loaded once (telecom's task file is 14 MB), split, and turned into `Tau2Task`."""

from __future__ import annotations

import importlib
from typing import Any

from josh.envs.tau2.data_model import SPLITS, GoalAction, Tau2Task
from josh.envs.tau2.paths import import_tau2, user_guidelines_path

# tau2 builds its user simulator's system prompt this way (tau2/user/user_simulator.py, SYSTEM_PROMPT); that
# module imports litellm, so the template is restated here and a test keeps it equal to tau2's file.
USER_SYSTEM_PROMPT = """
{global_user_sim_guidelines}

<scenario>
{instructions}
</scenario>
""".strip()


def domain_module(domain: str) -> Any:
    """`tau2.domains.<domain>.environment`."""
    import_tau2()
    return importlib.import_module(f"tau2.domains.{domain}.environment")


def load_domain_tasks(domain: str) -> tuple[list[Any], dict[str, list[str]]]:
    """Every task of the domain's task file (tau2 `Task` models, in file order) and its splits."""
    module = domain_module(domain)
    splits = dict(module.get_tasks_split() or {})
    return list(module.get_tasks(None)), splits


def user_system_prompt(instructions: str, with_tools: bool) -> str:
    """tau2's user-simulator system prompt for these instructions."""
    guidelines = user_guidelines_path(with_tools).read_text(encoding="utf-8")
    return USER_SYSTEM_PROMPT.format(global_user_sim_guidelines=guidelines, instructions=instructions)


def to_task(
    domain: str, source: Any, splits: dict[str, list[str]], policy: str, user_tools: bool
) -> Tau2Task:
    """A tau2 `Task` as josh's `Tau2Task`."""
    criteria = source.evaluation_criteria
    goals = tuple(
        GoalAction(
            action_id=a.action_id,
            name=a.name,
            requestor=a.requestor,
            arguments=dict(a.arguments),
            compare_args=tuple(a.compare_args) if a.compare_args is not None else None,
        )
        for a in ((criteria.actions if criteria is not None else None) or [])
    )
    instructions = str(source.user_scenario)
    return Tau2Task(
        domain=domain,
        task_id=source.id,
        splits=tuple(s for s in SPLITS if source.id in splits.get(s, ())),
        user_instructions=instructions,
        user_system_prompt=user_system_prompt(instructions, user_tools),
        policy=policy,
        goal_actions=goals,
        reward_basis=tuple(str(getattr(r, "value", r)) for r in (criteria.reward_basis if criteria else [])),
        communicate_info=tuple((criteria.communicate_info if criteria else None) or ()),
        nl_assertions=tuple((criteria.nl_assertions if criteria else None) or ()),
        source=source,
    )
