"""workers.Pool: forked workers whose crash fails one task and never hangs the caller."""

from __future__ import annotations

import faulthandler
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from catalysts.workers import Pool

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers are forked")

SETUP: list[str] = []  # what _setup saw, in the worker (the parent's copy stays empty)


def _setup(word: str) -> None:
    SETUP.append(word)


def _echo(value: object) -> object:
    return (os.getpid(), value, list(SETUP))


def _die(_: object = None) -> None:
    faulthandler.disable()  # pytest's would print this worker's stack
    os.kill(os.getpid(), signal.SIGSEGV)


def _raise(_: object = None) -> None:
    raise ValueError("bad input")


def _unpicklable(_: object = None) -> object:
    return threading.Lock()


PARENT = os.getpid()


def _fail_in(where: str) -> None:
    if (os.getpid() == PARENT) == (where == "parent"):
        raise MemoryError(f"cannot load this in the {where}")


class LoadsBadly:
    """Pickles fine; unpickling fails in the parent or in a worker."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        return (_fail_in, (self.where,))


def _reply_the_parent_cannot_load() -> LoadsBadly:
    return LoadsBadly("parent")


def _slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class Results:
    """Collects `done` calls, which arrive on the pool's collector thread."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> Any:
        def record(status: str, value: Any, seconds: float) -> None:
            self.seconds[name] = seconds
            self.inbox.put((name, status, value))

        return record

    def take(self, n: int, timeout: float = 20) -> dict[str, tuple[str, Any]]:
        got = {}
        for _ in range(n):
            name, status, value = self.inbox.get(timeout=timeout)
            assert name not in got, f"{name} reported twice"
            got[name] = (status, value)
        return got


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = Pool(2, _setup, ("ready",))
    yield p
    p.close(cancel=True)


def test_tasks_run_in_the_workers_after_their_initializer(pool: Pool) -> None:
    results = Results()
    for i in range(20):
        assert pool.submit(_echo, (i,), results.done(f"t{i}"))
    got = results.take(20)
    assert {name: (status, value[1:]) for name, (status, value) in got.items()} == {
        f"t{i}": ("ok", (i, ["ready"])) for i in range(20)
    }
    pids = {value[0] for _, value in got.values()}
    assert os.getpid() not in pids
    assert len(pids) <= 2
    assert SETUP == []  # the initializer ran in the workers only
    assert results.inbox.empty()


def test_an_exception_or_an_unpicklable_result_fails_that_task_only(pool: Pool) -> None:
    results = Results()
    pool.submit(_raise, (None,), results.done("raise"))
    pool.submit(_unpicklable, (None,), results.done("lock"))
    pool.submit(_echo, (1,), results.done("echo"))
    got = results.take(3)
    assert got["raise"] == ("failed", "ValueError")
    assert got["lock"][0] == "failed"
    assert got["echo"][0] == "ok"


def test_a_worker_that_dies_fails_its_task_and_the_other_worker_runs_the_rest(
    pool: Pool,
) -> None:
    results = Results()
    pool.submit(_die, (None,), results.done("die"))
    for i in range(10):
        assert pool.submit(_echo, (i,), results.done(f"t{i}"))
    got = results.take(11)
    assert got.pop("die") == ("failed", "the worker process died: SIGSEGV")
    assert {status for status, _ in got.values()} == {"ok"}
    # Later tasks still run, on the worker that is left.
    assert pool.submit(_echo, ("late",), results.done("late"))
    assert results.take(1)["late"][0] == "ok"


def test_when_the_last_worker_dies_waiting_tasks_come_back_unrun(pool: Pool) -> None:
    results = Results()
    pool.submit(_die, (None,), results.done("die1"))
    pool.submit(_die, (None,), results.done("die2"))
    for i in range(5):  # both workers are busy: these wait
        pool.submit(_echo, (i,), results.done(f"t{i}"))
    got = results.take(7)
    assert {name: status for name, (status, _) in got.items()} == {
        "die1": "failed",
        "die2": "failed",
        **{f"t{i}": "unrun" for i in range(5)},
    }
    assert not pool.submit(_echo, (0,), results.done("after"))  # the caller does it itself
    assert results.inbox.empty()


def test_close_waits_for_idle_workers_and_cancel_stops_busy_ones_at_once() -> None:
    idle = Pool(2, _setup, ("ready",))
    processes = [w.process for w in idle._workers]
    idle.close()
    assert [p.exitcode for p in processes] == [0, 0]

    busy = Pool(2, _setup, ("ready",))
    results = Results()
    for i in range(4):
        busy.submit(_slow, (30,), results.done(f"s{i}"))
    started = time.monotonic()
    busy.close(cancel=True)
    assert time.monotonic() - started < 10
    got = results.take(4)
    assert sorted(status for status, _ in got.values()) == ["failed", "failed", "unrun", "unrun"]
    assert not busy.submit(_echo, (0,), results.done("after"))


def _slow_then_die(seconds: float) -> None:
    time.sleep(seconds)
    _die()


def test_each_outcome_comes_with_the_time_its_task_ran(pool: Pool) -> None:
    results = Results()
    pool.submit(_slow, (0.3,), results.done("slow"))
    pool.submit(_slow_then_die, (0.3,), results.done("dies"))
    pool.submit(_slow, (0.0,), results.done("waits"))  # for one of those two
    got = results.take(3)
    assert got["slow"] == ("ok", 0.3)
    assert got["dies"] == ("failed", "the worker process died: SIGSEGV")
    assert results.seconds["slow"] >= 0.3
    assert results.seconds["dies"] >= 0.3
    assert results.seconds["waits"] < 0.25  # its wait for a worker is not counted


def test_a_callback_that_raises_is_shown_and_the_pool_carries_on(
    pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(status: str, value: Any, seconds: float) -> None:
        raise RuntimeError("a bug in the caller")

    pool.submit(_echo, (0,), broken)
    results = Results()
    for i in range(4):
        pool.submit(_echo, (i,), results.done(f"t{i}"))
    assert {status for status, _ in results.take(4).values()} == {"ok"}
    assert "RuntimeError: a bug in the caller" in capsys.readouterr().err


def test_close_without_wait_returns_at_once_and_the_workers_still_leave() -> None:
    pool = Pool(2, _setup, ("ready",))
    processes = [w.process for w in pool._workers]
    results = Results()
    pool.submit(_slow, (0.3,), results.done("slow"))
    assert results.take(1)["slow"] == ("ok", 0.3)
    started = time.monotonic()
    pool.close(wait=False)
    assert time.monotonic() - started < 0.2  # no process was waited for
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.is_alive() for p in processes):
        time.sleep(0.02)
    assert [p.exitcode for p in processes] == [0, 0]
    assert not pool.submit(_echo, (0,), results.done("after"))


def test_a_reply_the_parent_cannot_load_fails_that_task_and_the_others_run(pool: Pool) -> None:
    results = Results()
    pool.submit(_reply_the_parent_cannot_load, (), results.done("bad"))
    for i in range(6):
        pool.submit(_echo, (i,), results.done(f"t{i}"))
    got = results.take(7)
    assert got.pop("bad") == ("failed", "MemoryError")
    assert {status for status, _ in got.values()} == {"ok"}


def test_a_task_a_worker_cannot_load_fails_that_task_only(pool: Pool) -> None:
    results = Results()
    pool.submit(_echo, (LoadsBadly("worker"),), results.done("bad"))
    got = results.take(1)
    assert got["bad"] == ("failed", "MemoryError")
    pids = {w.process.pid for w in pool._workers}
    for i in range(6):
        pool.submit(_echo, (i,), results.done(f"t{i}"))
    assert {status for status, _ in results.take(6).values()} == {"ok"}
    assert {w.process.pid for w in pool._workers} == pids  # no worker was lost


def test_close_lets_running_tasks_finish_and_returns_waiting_ones_unrun() -> None:
    pool = Pool(2, _setup, ("ready",))
    processes = [w.process for w in pool._workers]
    results = Results()
    for i in range(5):
        pool.submit(_slow, (0.3,), results.done(f"s{i}"))
    pool.close()
    got = results.take(5)
    assert sorted(status for status, _ in got.values()) == ["ok", "ok", "unrun", "unrun", "unrun"]
    assert [p.exitcode for p in processes] == [0, 0]
