"""A run spread over a Ray cluster (`--ray ADDRESS`): connecting to one (or starting a local one), and one
job as a Ray task, awaited like a coroutine so that the run's ordinary pool (`run_pool`) streams the results.

Ray does the scheduling (which node, when) and the retries: a task whose worker dies (killed, out of memory,
its node lost) runs again elsewhere, up to `TASK_RETRIES` times. Ray is an optional dependency (the `[ray]`
extra); without it `--ray` fails in one line naming the install command.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from josh.errors import JoshError

RAY_INSTALL = "pip install 'josh-toolkit[ray]'"
LOCAL = "local"  # --ray local: start a cluster on this machine, for this run
TASK_RETRIES = 3  # Ray's default for tasks, said here: a job's worker may die this many times
log = logging.getLogger(__name__)


def import_ray() -> Any:
    """The `ray` module, or `JoshError` naming the install command."""
    try:
        import ray
    except ImportError:
        raise JoshError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


@contextmanager
def ray_cluster(address: str, report: Callable[[str], None]) -> Iterator[None]:
    """Connect this process to the Ray cluster at `address` for the block (`local`: start one here, with a
    worker slot per core, and stop it after). A process already connected (a test's cluster, a notebook)
    keeps its connection, and it stays open after. Ray's own log lines stay in its session folder, so that
    they do not break the progress line."""
    ray = import_ray()
    if ray.is_initialized():
        report(f"Ray: using this process's cluster ({_describe(ray)})")
        yield
        return
    settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, **settings)
        else:
            ray.init(address=address, **settings)
    except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError, ... for a bad address
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise JoshError(
            f"cannot connect to the Ray cluster at {address}: {first}; check --ray (ray://HEAD:10001 through "
            f"Ray Client, `auto` on a node of a running cluster, or `local`)"
        ) from None
    try:
        report(f"Ray: {'started a local cluster' if address == LOCAL else 'connected to ' + address} "
               f"({_describe(ray)})")  # fmt: skip
        yield
    finally:
        ray.shutdown()  # stops a local cluster; disconnects from a remote one, which keeps running


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse, in one line, a `--ray` address that is not HOST:PORT or that nothing listens on: Ray itself
    retries the connection for minutes, printing its own warnings, before it gives up. `local` and `auto`
    pass (Ray finds or starts the cluster itself)."""
    if address in (LOCAL, "auto"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise JoshError(
            f"--ray {address}: not HOST:PORT; give ray://HEAD:10001 (Ray Client), HEAD:6379 (the head's "
            "address), `auto` on a node of a running cluster, or `local`"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise JoshError(
            f"cannot reach the Ray cluster at {address} ({reason.lower()}): is its head running "
            "(`ray start --head`) and the port open from here?"
        ) from None


def _describe(ray: Any) -> str:
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    cpus = int(resources.get("CPU", 0))
    return f"{cpus} worker slot{'s' if cpus != 1 else ''} on {nodes} node{'s' if nodes != 1 else ''}"


def remote(function: Callable[..., Any]) -> Any:
    """`function` as a Ray task that Ray runs again, elsewhere, when its worker dies (not when it raises:
    an error of the job itself is the job's result, as in a local run)."""
    return import_ray().remote(max_retries=TASK_RETRIES, retry_exceptions=False)(function)


async def call_remote(task: Any, *args: Any) -> Any:
    """Run the Ray task `task` on `args` somewhere on the cluster and return its result. Cancelled (Ctrl-C,
    the run stopping), it cancels the task, killing its worker, whose unfinished job is not recorded."""
    ray = import_ray()
    ref = task.remote(*args)
    try:
        return await ref
    except asyncio.CancelledError:
        ray.cancel(ref, force=True)
        raise
