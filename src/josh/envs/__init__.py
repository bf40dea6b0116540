"""Environments: tasks, tool schemas, tool execution and sparse rewards."""
