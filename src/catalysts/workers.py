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
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Literal

# What became of a task: "ok" with its result; "failed" with a reason (the function raised,
# or the worker died running it); "unrun" when the last worker died before it started.
# Then the seconds from its start in a worker to that outcome (0 when unrun).
Status = Literal["ok", "failed", "unrun"]
Done = Callable[[Status, Any, float], None]

_STOP = ForkingPickler.dumps(None)


class _Worker:
    __slots__ = ("conn", "process", "started", "task")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.task: tuple[bytes, Done] | None = None
        self.started = 0.0  # when it was given its task


class Pool:
    """`workers` forked processes, each set up by `initializer(*initargs)` once.

    `submit` queues a call; its `done` callback runs on the pool's collector thread, once
    (on the caller's, for tasks still waiting at `close`). Raises OSError when the
    processes cannot be started (none is left running then).
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
        """Run `fn(*args)` in a worker, then `done(status, value, seconds)`; False (and no
        call to `done`) when no worker is left to run it."""
        task = (ForkingPickler.dumps((fn, tuple(args))), done)
        with self._lock:
            if self._closed or not self._workers:
                return False
            if not self._idle:
                self._waiting.append(task)
                return True
            worker = self._idle.pop()
            worker.task, worker.started = task, time.perf_counter()
        # The bytes taken under the lock: should the worker die now, the collector may bury
        # it and fail its task at any moment.
        _send(worker.conn, task[0])
        return True

    def close(self, *, cancel: bool = False, wait: bool = True) -> None:
        """Stop the workers: each once its task is done, or at once with `cancel` (a task
        still running is then reported as failed). Tasks still waiting come back unrun.

        Without `wait`, the workers leave in the background and the caller need not wait
        for processes to exit. With it, a task still running after 5 s is killed, and its
        callback may come after `close` returns.
        """
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            idle, self._idle = self._idle, []
            orphans = list(self._waiting)
            self._waiting.clear()
        if cancel:
            for worker in workers:
                worker.process.terminate()
        else:
            for worker in idle:  # the busy ones are stopped as they finish (_finish)
                _send(worker.conn, _STOP)
        for _, done in orphans:
            _call(done, "unrun", None, 0.0)
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
                    except BaseException as exc:  # a reply this process cannot take in
                        self._retire(worker, type(exc).__name__)
                    else:
                        self._finish(worker, status, value)
                elif worker.process.sentinel in ready:
                    self._bury(worker)

    def _finish(self, worker: _Worker, status: Status, value: Any) -> None:
        with self._lock:
            task, seconds = worker.task, time.perf_counter() - worker.started
            if self._closed:
                worker.task, data = None, _STOP
            elif self._waiting:
                worker.task, worker.started = self._waiting.popleft(), time.perf_counter()
                data = worker.task[0]
            else:
                worker.task, data = None, None
                self._idle.append(worker)
        if data is not None:
            _send(worker.conn, data)
        if task is not None:
            _call(task[1], status, value, seconds)

    def _retire(self, worker: _Worker, reason: str) -> None:
        """Fail the worker's task and stop it: its pipe may have stopped mid-message (a
        MemoryError), so nothing more is sent to it. It is buried when it has exited."""
        with self._lock:
            task, worker.task = worker.task, None
        worker.process.kill()
        if task is not None:
            _call(task[1], "failed", reason, time.perf_counter() - worker.started)

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
            reason = f"the worker process died: {_exit_reason(worker.process)}"
            _call(task[1], "failed", reason, time.perf_counter() - worker.started)
        for _, done in orphans:
            _call(done, "unrun", None, 0.0)


def _call(done: Done, status: Status, value: Any, seconds: float) -> None:
    try:
        done(status, value, seconds)
    except BaseException:  # the caller's bug: shown, and the other tasks' callbacks still run
        sys.excepthook(*sys.exc_info())


def _send(conn: Connection, data: bytes) -> None:
    # A worker that died meanwhile: the collector fails its task when it buries it.
    with contextlib.suppress(OSError):
        conn.send_bytes(data)


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


def _raise(exc: BaseException) -> None:
    raise exc


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
        except Exception as exc:  # a task that cannot be unpickled here; it was read whole
            task = (_raise, (exc,))
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
