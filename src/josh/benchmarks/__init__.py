"""Benchmarks: an environment, agents, user simulators and the runner assembled into runs.

This package holds what every benchmark shares: the run options (`run_options`, `harvest_options`), the
models of a run (`endpoints`), the jobs (`jobs`), the evaluation and harvest loops (`evaluation`,
`harvest`), the checks before any work (`context_check`) and what a benchmark must give them (`setup`,
`benchmark`). Each benchmark is a folder of its own (`toolwoz/`, `tau2/`), registered once in
`josh.cli.benchmarks`; nothing here imports one.
"""
