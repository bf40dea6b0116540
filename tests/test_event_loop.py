"""`josh.llm.event_loop.run`: josh's runs with the objects made before them kept out of garbage collection
while they go, and the collector put back after; otherwise as `asyncio.run`."""

from __future__ import annotations

import asyncio
import gc
import os
import selectors
import signal
import socket
import threading
import time

import pytest

from josh.llm import event_loop


def test_what_existed_is_frozen_while_the_loop_runs_and_released_after() -> None:
    async def look() -> tuple[int, int]:
        return gc.get_freeze_count(), gc.get_threshold()[0]

    before_threshold = gc.get_threshold()
    before_frozen = gc.get_freeze_count()
    frozen, threshold = event_loop.run(look())
    assert frozen > before_frozen  # the modules and data made before the run
    assert threshold == max(before_threshold[0], event_loop.YOUNG_THRESHOLD)
    assert gc.get_freeze_count() == before_frozen and gc.get_threshold() == before_threshold


def test_a_failure_and_ctrl_c_end_the_run_as_asyncio_run_does() -> None:
    thresholds = gc.get_threshold()

    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        event_loop.run(fail())
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0

    cancelled = threading.Event()

    async def wait() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))  # to the process, as Ctrl-C
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        event_loop.run(wait())
    assert time.monotonic() - started < 10
    timer.join()
    assert cancelled.is_set()  # the main task was cancelled, so its cleanup ran


def test_runs_side_by_side_put_the_collector_back_when_the_last_ends() -> None:
    """A mock endpoint's loop in a thread beside a harvest's: the collector is tuned from the first start to
    the last end, here the first to start ending first."""
    thresholds = gc.get_threshold()
    tuned = max(thresholds[0], event_loop.YOUNG_THRESHOLD)
    first_started, second_started = threading.Event(), threading.Event()

    async def first() -> None:
        first_started.set()
        await asyncio.to_thread(second_started.wait, 5)

    async def second(thread: threading.Thread) -> int:
        second_started.set()
        await asyncio.to_thread(thread.join, 10)  # the first run ends while this one goes on
        return gc.get_threshold()[0]

    thread = threading.Thread(target=event_loop.run, args=(first(),))
    thread.start()
    assert first_started.wait(5)
    assert event_loop.run(second(thread)) == tuned
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="epoll is Linux's")
def test_precise_timers_wait_the_exact_timeout_not_whole_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """epoll rounds a wait up to the millisecond (a 50 ms timer fires ~0.8 ms late); the precise loop waits
    with select() on the epoll descriptor, given the timeout as it is, then takes the events at once."""
    import select as select_module

    waits: list[float] = []
    real_select = select_module.select

    def spy(r: list[int], w: list[int], x: list[int], timeout: float) -> object:
        waits.append(timeout)
        return real_select(r, w, x, timeout)

    monkeypatch.setattr(event_loop.select, "select", spy)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        assert isinstance(loop._selector, event_loop._PreciseEpollSelector)  # type: ignore[attr-defined]
        reader, writer = socket_pair = socket.socketpair()
        try:
            got = loop.create_future()
            loop.add_reader(reader.fileno(), lambda: got.set_result(reader.recv(10)))
            loop.call_later(0.0123, writer.send, b"ping")  # I/O that comes while a timer's wait goes on
            data = await asyncio.wait_for(got, 5)
            loop.remove_reader(reader.fileno())
            await asyncio.sleep(0.0071)
            return data.decode()
        finally:
            for sock in socket_pair:
                sock.close()

    assert event_loop.run(main(), precise_timers=True) == "ping"
    fractions = [w for w in waits if w and abs(w * 1000 - round(w * 1000)) > 1e-6]
    assert fractions, f"no wait shorter than a whole millisecond: {waits}"
    assert any(0.0065 < w <= 0.0071 for w in waits)  # the sleep's own wait, unrounded


def test_the_default_loop_is_asyncio_s_own() -> None:
    async def kind() -> type:
        return type(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    assert event_loop.run(kind()) is not event_loop._PreciseEpollSelector
