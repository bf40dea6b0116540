"""ToolWOZ's commands, as `josh.cli.benchmarks` registers them: `josh eval toolwoz`, `josh harvest toolwoz`
and `josh serve-mock --benchmark toolwoz` (the default)."""

from __future__ import annotations

from josh.benchmarks.benchmark import BenchmarkCommands
from josh.benchmarks.toolwoz.benchmark import ToolWOZBenchmark, evaluate
from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig, ToolWOZHarvestConfig
from josh.benchmarks.toolwoz.harvest import harvest

EVAL_HELP = """Benchmark a tool-calling agent on ToolWOZ with a simulated customer.

With no --model this is a DRY RUN against josh's scripted mock endpoint (an oracle agent and a scripted
customer, not language models), started in-process: it exercises the whole pipeline for real. Point it
at any OpenAI-compatible endpoint with --model NAME [--base-url URL]; the key comes from $OPENAI_API_KEY
or --api-key-env. By default the protocol is the paper's: its prompts, read from the official
josh-train 0.1.4 wheel, and --strict-errors.

Results are appended to --out as each conversation finishes; --resume continues a stopped run;
RUN.summary.json and RUN.config.json are written beside it. Exit status: 0 when every conversation
was scored, 3 when some ended in an error (count on the last line), 4 when the endpoint went down and
the run stopped, 130 when interrupted, 1 for bad options or input.
"""

HARVEST_HELP = """Grow one JOSH tree per ToolWOZ task: a beam search over agent turns in simulation.

Each agent turn branches in two until the beam (--beam, 8) is full; the first branch whose turn makes a
correct goal call (a sparse reward) becomes the new root and the others are pruned (kept in the record);
the path of rewarded turns is the golden path. The agent samples (--temperature above 0); the customer
keeps its own temperature, so siblings diverge through the agent; siblings' identical first requests go
as one request with n choices (--no-use-n to turn off).

With no --model this is a DRY RUN on josh's scripted mock endpoint, with --mock-mistake-rate 0.3 unless
told otherwise, so trees branch and some branches fail. Every option of `josh eval toolwoz` applies (the
run file, --resume, endpoints, protocol, concurrency, cache, retries). One JSONL line per tree after the
run file's header. Exit status as for `josh eval toolwoz`: 0, 3 (some trees ended in an error), 4 (the
endpoint stopped the run), 130 (interrupted), 1 (bad options or input).
"""

TOOLWOZ = BenchmarkCommands(
    name="toolwoz",
    eval_config=ToolWOZEvalConfig,
    harvest_config=ToolWOZHarvestConfig,
    evaluate=evaluate,
    harvest=harvest,
    benchmark=lambda cfg: ToolWOZBenchmark(),
    out_prefix=lambda cfg: "toolwoz",
    eval_help=EVAL_HELP,
    harvest_help=HARVEST_HELP,
    served=lambda domain: ToolWOZBenchmark(),
    served_help="ToolWOZ's",
)
