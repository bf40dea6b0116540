"""tau2-bench (airline, retail, telecom) for josh's commands (the environment itself is `josh.envs.tau2`):

- `config`: the options of `josh eval tau2` and `josh harvest tau2`;
- `prompts`: the agent's system prompt around the domain policy, tau2's or josh's;
- `setups`: the agent, and each (task, trial)'s session, customer and goals;
- `benchmark`: the environment, checks and models of a run, and its evaluation;
- `harvest`: its JOSH harvest;
- `commands`: all of it as `josh.cli.benchmarks` registers it;
- what josh's scripted mock plays on its tasks is `josh.mock.tau2_script` (below, so `josh.gym` plays it too).
"""
