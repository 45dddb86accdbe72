"""Forked worker processes for CPU work, where a crash costs one task and never the run.

Why not `concurrent.futures.ProcessPoolExecutor`: once one of its workers dies, it fails
every pending future and refuses every later submit, so a feed that arrives after a parser
crash would stop the whole fetch. And in Python 3.11 its crash handling does not hold the
lock that `submit` takes: a submit racing it can add a work item that is never failed, and
the caller waits for it forever. Here each worker has a pipe of its own, so which task a
dead worker had is known exactly: that task fails, the other workers carry on, and when
none is left `submit` says so and the caller does the work itself.

Workers are forked: they inherit the caller's memory (compiled rules, imported modules),
so fork before starting threads that may hold locks.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Literal

# What became of a task: "ok" with its result; "failed" with a reason (the function raised,
# or the worker died running it); "unrun" when the last worker died before it started.
Status = Literal["ok", "failed", "unrun"]
Done = Callable[[Status, Any], None]

_STOP = ForkingPickler.dumps(None)


class _Worker:
    __slots__ = ("conn", "process", "task")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.task: tuple[bytes, Done] | None = None


class Pool:
    """`workers` forked processes, each set up by `initializer(*initargs)` once.

    `submit` queues a call; its `done` callback runs on the pool's collector thread, once.
    Raises OSError when the processes cannot be started (none is left running then).
    """

    def __init__(
        self, workers: int, initializer: Callable[..., None], initargs: Sequence[Any] = ()
    ) -> None:
        context = multiprocessing.get_context("fork")
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._waiting: deque[tuple[bytes, Done]] = deque()
        self._closed = False
        try:
            for _ in range(workers):
                ours, theirs = context.Pipe()
                # A child closes the parent's ends it inherits, so that each worker's pipe
                # reaches end-of-file as soon as the parent is gone, killed or not.
                inherited = [w.conn for w in self._workers] + [ours]
                process = context.Process(
                    target=_serve,
                    args=(theirs, inherited, initializer, tuple(initargs)),
                    name="catalysts-worker",
                    daemon=True,
                )
                process.start()
                theirs.close()
                worker = _Worker(process, ours)
                self._workers.append(worker)
                self._idle.append(worker)
        except BaseException:
            self.close(cancel=True)
            raise
        self._collector = threading.Thread(
            target=self._collect, name="catalysts-workers", daemon=True
        )
        self._collector.start()

    def submit(self, fn: Callable[..., Any], args: Sequence[Any], done: Done) -> bool:
        """Run `fn(*args)` in a worker, then `done(status, value)`; False (and no call to
        `done`) when no worker is left to run it."""
        task = (ForkingPickler.dumps((fn, tuple(args))), done)
        with self._lock:
            if self._closed or not self._workers:
                return False
            if not self._idle:
                self._waiting.append(task)
                return True
            worker = self._idle.pop()
            worker.task = task
        self._send(worker)
        return True

    def close(self, *, cancel: bool = False, wait: bool = True) -> None:
        """Stop the workers once idle, or at once (`cancel`: tasks still running or waiting
        are then reported as failed or unrun, to callbacks nobody may be reading).

        Without `wait`, the workers leave in the background: nothing is left to read
        from them, and the caller need not wait for processes to exit.
        """
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            if cancel:
                worker.process.terminate()
            else:
                with contextlib.suppress(OSError):  # already gone: the collector buries it
                    worker.conn.send_bytes(_STOP)
        if not wait:
            return
        collector = getattr(self, "_collector", None)  # None while __init__ is failing
        if collector is not None:
            collector.join(timeout=5)
        for worker in workers:
            worker.process.join(timeout=1)
            if worker.process.is_alive():  # a worker stuck in a task
                worker.process.kill()
                worker.process.join()
            worker.conn.close()

    # --- the collector thread --------------------------------------------------------------

    def _collect(self) -> None:
        while True:
            with self._lock:
                live = list(self._workers)
            if not live:
                return
            ready = set(wait([w.conn for w in live] + [w.process.sentinel for w in live]))
            for worker in live:
                if worker.conn in ready:
                    try:
                        status, value = worker.conn.recv()
                    except (EOFError, OSError):
                        self._bury(worker)
                    else:
                        self._finish(worker, status, value)
                elif worker.process.sentinel in ready:
                    self._bury(worker)

    def _finish(self, worker: _Worker, status: Status, value: Any) -> None:
        task = worker.task
        with self._lock:
            worker.task = self._waiting.popleft() if self._waiting else None
            if worker.task is None:
                self._idle.append(worker)
        if worker.task is not None:
            self._send(worker)
        if task is not None:
            task[1](status, value)

    def _bury(self, worker: _Worker) -> None:
        worker.process.join(timeout=1)
        with self._lock:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            task, worker.task = worker.task, None
            orphans = list(self._waiting) if not self._workers else []
            if orphans:
                self._waiting.clear()
        if task is not None:
            task[1]("failed", f"the worker process died: {_exit_reason(worker.process)}")
        for _, done in orphans:
            done("unrun", None)

    def _send(self, worker: _Worker) -> None:
        assert worker.task is not None
        # One that died meanwhile: the collector fails its task when it buries it.
        with contextlib.suppress(OSError):
            worker.conn.send_bytes(worker.task[0])


def _exit_reason(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _serve(
    conn: Connection,
    inherited: Sequence[Connection],
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
) -> None:
    for other in inherited:
        other.close()
    initializer(*initargs)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        fn, args = task
        try:
            reply: tuple[Status, Any] = ("ok", fn(*args))
        except BaseException as exc:  # the parent decides what a failure means
            reply = ("failed", type(exc).__name__)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result that cannot be pickled; nothing was sent yet
            conn.send(("failed", type(exc).__name__))
