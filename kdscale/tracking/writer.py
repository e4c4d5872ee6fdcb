"""MLflow writes off the Tune controller's thread (`Writer`), in order, with the first failure kept.

Tune calls the driver's callback on the thread that also hands finished workers their next trial,
so every MLflow call a callback makes (a finished trial: create the run, log params, inputs,
history and results, close it; 0.1-0.2 s on SQLite) keeps a free worker waiting. The Writer runs
those calls on one thread of its own, in the order they were given; the results store still gets
each row on the callback's thread, before its MLflow calls are queued. A driver killed with calls
still queued leaves rows whose runs are unfinished, which the next driver logs from the store (the
same start-up sweep as for a driver killed mid-call, kdscale.tracking), so nothing is lost and no
run is made twice.

A failing call (an EnvironmentFault naming the URI) stops the thread; the next `submit` or `close`
raises it, so the study stops on it as it did when the calls ran inline.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable

_STOP = object()


class Writer:
    """One thread running submitted calls in order; `close()` waits for all of them."""

    def __init__(self, name: str = "kdscale-mlflow"):
        self._calls: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:  # after a failure the rest is dropped: the study stops on it
                    function, args, kwargs = item
                    function(*args, **kwargs)
            except BaseException as error:  # kept for the driver's thread, which raises it
                self._error = error
            finally:
                self._calls.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, function: Callable[..., Any], *args, **kwargs) -> None:
        """Queue one call; raises the failure of an earlier one, if any."""
        self._raise()
        if not self._thread.is_alive():
            raise RuntimeError("the MLflow writer is closed")
        self._calls.put((function, args, kwargs))

    def close(self) -> None:
        """Run what is queued, stop the thread, and raise the first failure, if any."""
        if self._thread.is_alive():
            self._calls.put(_STOP)
            self._thread.join()
        self._raise()
