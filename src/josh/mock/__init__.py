"""A scripted, OpenAI-compatible mock endpoint that plays agent and user on benchmark tasks
(ToolWOZ's; tau2's through `josh.mock.tau2_script.tau2_script`).

It is not a language model: an oracle agent makes the task's goal calls (with a configurable mistake
rate) and a scripted customer reveals the goal. It is how users dry-run pipelines, how tests exercise
the real HTTP path, and how benchmarks measure orchestration.
"""

from josh.mock.policies import MockCall, MockConfig, MockScript, ScriptedToolWOZ, toolwoz_script
from josh.mock.server import MockServer

__all__ = ["MockCall", "MockConfig", "MockScript", "MockServer", "ScriptedToolWOZ", "toolwoz_script"]
