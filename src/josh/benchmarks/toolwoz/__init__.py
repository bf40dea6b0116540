"""ToolWOZ, the paper's benchmark, for josh's commands (the environment itself is `josh.envs.toolwoz`):

- `config`: the options of `josh eval toolwoz` and `josh harvest toolwoz`;
- `prompts`: the paper's prompt texts (read from the wheel) or josh's wording;
- `setups`: the agent, and each (task, trial)'s session, customer and goals;
- `benchmark`: the environment, checks and models of a run, and its evaluation;
- `harvest`: its JOSH harvest;
- `commands`: all of it as `josh.cli.benchmarks` registers it.
"""
