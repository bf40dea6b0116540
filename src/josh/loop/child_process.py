"""A stage's child process never outlives the loop.

Killed (even with `kill -9`), the loop takes its stage with it: the child asks Linux for SIGTERM when its
parent dies (prctl PR_SET_PDEATHSIG) as the first thing `josh` does, so a trainer cannot go on writing
checkpoints beside a rerun of the loop. Stopped with SIGTERM or Ctrl-C, the loop stops its child itself
(`stop_child`) before it exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

# Set by the loop in its child's environment: the loop's process id.
PARENT_PID_ENV = "JOSH_LOOP_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_GRACE_S = 10.0  # how long a stopped stage may take to finish (an eval writes its "cancelled" status)


def die_with_parent() -> None:
    """In a stage's child (`JOSH_LOOP_PID` set): get SIGTERM when the loop dies, and stop now if it already
    has. Does nothing elsewhere, nor off Linux (no such signal there)."""
    parent = os.environ.pop(PARENT_PID_ENV, None)  # popped: the child's own children are no stages
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        # Delivered when the thread that started this process dies: the loop runs its stages from its main
        # thread, so that is when the loop itself ends.
        ctypes.CDLL(None, use_errno=True).prctl(
            PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        )
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the loop died before the request was made: adopted already
        os.kill(os.getpid(), signal.SIGTERM)


def stop_child(child: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """Stop a stage's child: SIGTERM, then SIGKILL if it is still running after `grace_s` seconds (or at a
    second Ctrl-C); returns once it has exited."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        child.kill()
        child.wait()
