"""Run the reference implementation (josh-train 0.1.4) as an oracle, in its own process.

Usage: python reference_harness.py WHEEL WORKDIR
Reads JSON lines on stdin, writes one JSON line per request on stdout:
  {"op": "goals"}                                   -> the reference's ground-truth goal calls (create_apis)
  {"op": "run", "task_id": "MUL0003.json", "calls": [[name, arguments], ...]}
      -> {"results": [...], "events": [[call_index, goal_name], ...], "score": float}
  {"op": "turns", "task_id": "MUL0003.json", "turns": [[[name, arguments], ...], ...]}
      -> {"events": [[turn_index, goal_name], ...], "credited": number of turns the reference credited,
          "ran": number of calls it ran (all, unless one raised)}
      the JOSH search's crediting: each turn's calls judged together against the goals pending when the turn
      began (`ToolWOZRewards.is_reward`), the met ones deleted when the turn ends (`delete_reward`, as the
      collapse onto that leaf does); where the reference raises, that turn is the last (its calls before
      the exception still count, as a leaf whose agent step raised)
Each result is the reference's tool result (NaN as null), or {"__exception__": "..."} where the reference
raised. Needs pandas; the reference's other imports (pandasql, tiktoken, dotenv, colorama) are only used by
code paths we do not call and are stubbed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
import types
import zipfile


def _stub_modules() -> None:
    for name in ("pandasql", "tiktoken", "dotenv", "colorama"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["dotenv"].load_dotenv = lambda *a, **k: None  # type: ignore[attr-defined]

    class _Codes:
        def __getattr__(self, _name: str) -> str:
            return ""

    for name in ("Back", "Fore", "Style"):
        setattr(sys.modules["colorama"], name, _Codes())


def _prepare(wheel: str, workdir: str) -> None:
    marker = os.path.join(workdir, ".ready")
    if os.path.exists(marker):
        return
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(("josh_train/", "data/", "db/"))]
        zf.extractall(workdir, members)
    with zipfile.ZipFile(os.path.join(workdir, "data", "dataset.zip")) as zf:
        zf.extractall(os.path.join(workdir, "data"))
    open(marker, "w").close()


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _clean(value.item())
    return value


def _bench(request, apis, delex, real_create_dbs, utils, conversation_state) -> dict:
    """Time the reference's own tool calls and conversation set-up, inside this process (no IPC)."""
    conversations = [
        (conversation_state.Conversation(key, apis, delex), calls) for key, calls in request["sequences"]
    ]
    calls = 0
    started = time.perf_counter()
    for conv, sequence in conversations:
        for name, arguments in sequence:
            utils.handle_api_calls(name, arguments, conv)
            calls += 1
    call_seconds = time.perf_counter() - started
    shared = conversation_state.create_dbs
    conversation_state.create_dbs = real_create_dbs  # the reference reads its databases per conversation
    try:
        started = time.perf_counter()
        for key in request["setup_tasks"]:
            conversation_state.Conversation(key, apis, delex)
        setup_seconds = (time.perf_counter() - started) / len(request["setup_tasks"])
    finally:
        conversation_state.create_dbs = shared
    return {"calls": calls, "call_seconds": call_seconds, "setup_seconds": setup_seconds}


def _turns(request, apis, delex, utils, conversation_state, conversation_state_pref_tree) -> dict:
    """Crediting of whole agent turns, as the reference's JOSH search does it (see the module docstring)."""
    key = request["task_id"]
    conv = conversation_state.Conversation(key, apis, delex)
    tree = conversation_state_pref_tree.Conversation(key, apis, delex)
    events, ran = [], 0
    for index, calls in enumerate(request["turns"]):
        crashed = False
        actions = []
        for name, arguments in calls:
            try:
                result = utils.handle_api_calls(name, copy.deepcopy(arguments), conv)
            except Exception:
                crashed = True
                break
            ran += 1
            returned = (result[0] if result else result) if isinstance(result, list) else result
            actions.append({"name": name, "parameters": arguments, "returned": returned})
        try:
            _, _, _, to_delete = tree.evaluate_apis([a for a in actions if a])
        except Exception:
            return {"events": events, "credited": index, "ran": ran}
        for domain, api in to_delete:
            events.append([index, api])
            del tree.apis_for_eval[domain]["success"][api]
        if crashed:
            return {"events": events, "credited": index + 1, "ran": ran}
    return {"events": events, "credited": len(request["turns"]), "ran": ran}


def main() -> None:
    wheel, workdir = sys.argv[1], sys.argv[2]
    # The reference prints to stdout ("out of scope api"); keep our protocol on a private handle.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    os.makedirs(workdir, exist_ok=True)
    _prepare(wheel, workdir)
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    _stub_modules()
    from josh_train import utils  # noqa: E402
    from josh_train.conversation_types import conversation_state, conversation_state_pref_tree  # noqa: E402

    real_create_dbs = conversation_state.create_dbs
    dbs = utils.create_dbs()
    gt_path = os.path.join(workdir, "ground_truth_apis.json")
    if os.path.exists(gt_path):
        with open(gt_path) as fh:
            apis = json.load(fh)
    else:
        apis = utils.create_apis(dbs)
        with open(gt_path, "w") as fh:
            json.dump(apis, fh)
        with open(gt_path) as fh:  # the reference runs on the JSON round trip of its build
            apis = json.load(fh)
    # Conversations would re-read every database per task; they are never mutated, so share them.
    conversation_state.create_dbs = lambda: dbs
    conversation_state_pref_tree.create_dbs = lambda: dbs
    delex = {k: {"goal": {"message": []}, "log": []} for k in apis}

    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "goals":
            out = {
                key: [
                    {
                        "name": api,
                        **{k: v for k, v in spec.items() if k != "returns" or api.startswith("book_")},
                    }
                    for domain in value.values()
                    for api, spec in domain["success"].items()
                ]
                for key, value in apis.items()
            }
            print(json.dumps(_clean(out)), file=protocol, flush=True)
            continue
        if request["op"] == "bench":
            print(
                json.dumps(_bench(request, apis, delex, real_create_dbs, utils, conversation_state)),
                file=protocol,
                flush=True,
            )
            continue
        if request["op"] == "build":
            started = time.perf_counter()
            utils.create_apis(utils.create_dbs())
            print(json.dumps({"build_seconds": time.perf_counter() - started}), file=protocol, flush=True)
            continue
        if request["op"] == "turns":
            print(json.dumps(_turns(request, apis, delex, utils, conversation_state, conversation_state_pref_tree)),
                  file=protocol, flush=True)
            continue
        key = request["task_id"]
        conv = conversation_state.Conversation(key, apis, delex)
        tree = conversation_state_pref_tree.Conversation(key, apis, delex)
        results, events = [], []
        for index, (name, arguments) in enumerate(request["calls"]):
            try:
                result = utils.handle_api_calls(name, copy.deepcopy(arguments), conv)
            except Exception as exc:  # the reference crashes on some inputs; report it
                results.append({"__exception__": f"{type(exc).__name__}: {exc}"})
                continue
            results.append(_clean(copy.deepcopy(result)))
            returned = result[0] if isinstance(result, list) and result else result
            action = {"name": name, "parameters": arguments, "returned": returned}
            try:
                _, _, _, to_delete = tree.evaluate_apis([action])
            except Exception as exc:
                events.append([index, f"__exception__ {type(exc).__name__}: {exc}"])
                continue
            for domain, api in to_delete:
                events.append([index, api])
                del tree.apis_for_eval[domain]["success"][api]
        try:
            score = conv.evaluate_apis()[0]
        except Exception as exc:
            score = f"__exception__ {type(exc).__name__}: {exc}"
        print(json.dumps({"results": results, "events": events, "score": score}), file=protocol, flush=True)


if __name__ == "__main__":
    main()
