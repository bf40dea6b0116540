"""Run the reference's ReAct turn (josh-train 0.1.4 `ReACTAgentSimulator.step`) on scripted model outputs.

Usage: python react_harness.py WHEEL WORKDIR CORPUS.json
For each case of the corpus (`history`: the agent's internal messages so far, `replies`: the model's outputs
in order) it runs one agent turn of the reference, with the model replaced by the replies and the tool
executor replaced by a deterministic fake that first runs the reference's own `validate_api_call` (so it
fails exactly where the reference's executor does), and prints one JSON list:
  {"id", "internal": [new internal messages], "spoken": [new customer-visible messages], "calls": [[name,
   arguments], ...], "model_calls": int, "crash": "TypeError: ..." or null}
The reference's heavy imports (torch, transformers) are stubbed; its utils module needs pandas.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import types
import zipfile

MEMBERS = ("data/valid_api_defs.json", "data/tools.json", "data/api_examples.json", "prompts/prompts.yaml")


def fake_result(index: int, name: str) -> list[dict]:
    """What a tool call returns here; the test's executor returns the same."""
    return [{"call": index, "name": name}]


def _stub_modules() -> None:
    for name in ("pandasql", "tiktoken", "dotenv", "colorama", "torch", "transformers"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["dotenv"].load_dotenv = lambda *a, **k: None  # type: ignore[attr-defined]
    for name in ("pipeline", "AutoTokenizer", "AutoModelForCausalLM"):
        setattr(sys.modules["transformers"], name, None)

    class _Codes:
        def __getattr__(self, _name: str) -> str:
            return ""

    for name in ("Back", "Fore", "Style"):
        setattr(sys.modules["colorama"], name, _Codes())


def _prepare(wheel: str, workdir: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith("josh_train/") or m in MEMBERS]
        zf.extractall(workdir, members)


class _OutOfReplies(Exception):
    pass


def _run(case: dict, react_agent, utils, api_examples) -> dict:
    """One turn of the reference's ReAct agent on `case`."""
    replies = list(case["replies"])
    calls: list[list] = []
    model_calls = 0

    def request(messages, model=None, tokenizer=None):
        nonlocal model_calls
        if not replies:
            raise _OutOfReplies(case["id"])
        model_calls += 1
        return replies.pop(0)

    def execute(api_name, api_args, conversation_state):
        utils.validate_api_call(api_name, api_args)  # the reference's executor fails here, or not at all
        calls.append([api_name, copy.deepcopy(api_args)])
        return fake_result(len(calls) - 1, api_name)

    react_agent.handle_api_calls = execute
    agent = react_agent.ReACTAgentSimulator(api_examples, None)
    agent.request = request
    history = case.get("history", [{"role": "user", "content": "I need a hotel in the north."}])
    agent.messages = []
    agent.messages_internal = copy.deepcopy(history)
    crash = None
    try:
        agent.step(env=None, model=None, tokenizer=None)
    except _OutOfReplies:
        raise SystemExit(f"corpus case {case['id']!r} needs more model replies") from None
    except Exception as exc:
        crash = f"{type(exc).__name__}: {exc}"
    return {
        "id": case["id"],
        "internal": agent.messages_internal[len(history) :],
        "spoken": agent.messages,
        "calls": calls,
        "model_calls": model_calls,
        "crash": crash,
    }


def main() -> None:
    wheel, workdir, corpus_path = sys.argv[1:4]
    with open(corpus_path) as fh:
        corpus = json.load(fh)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # the reference prints
    os.makedirs(workdir, exist_ok=True)
    _prepare(wheel, workdir)
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    _stub_modules()
    from josh_train import utils  # noqa: E402
    from josh_train.agents import react_agent  # noqa: E402

    with open("data/api_examples.json") as fh:
        api_examples = json.load(fh)
    out = [_run(case, react_agent, utils, api_examples) for case in corpus]
    print(json.dumps(out), file=protocol, flush=True)


if __name__ == "__main__":
    main()
