"""Benchmarks: an environment, agents, user simulators and the runner assembled into one evaluation."""
