"""The MLflow writer thread (kdscale.tracking.writer): calls run in order, off the caller's thread,
and the first failure reaches the caller at its next submit or at close."""
import threading
import time

import pytest

from kdscale.errors import EnvironmentFault
from kdscale.tracking.writer import Writer


def test_calls_run_in_order_on_another_thread_and_close_waits_for_them():
    done, threads = [], set()

    def slow(i):
        time.sleep(0.01)
        threads.add(threading.current_thread().name)
        done.append(i)

    writer = Writer()
    started = time.perf_counter()
    for i in range(20):
        writer.submit(slow, i)
    assert time.perf_counter() - started < 0.1  # submitting does not wait for the calls (20 x 10 ms)
    writer.close()
    assert done == list(range(20)) and threads == {"kdscale-mlflow"}
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(slow, 20)


def test_the_first_failure_reaches_the_caller_and_later_calls_are_dropped():
    done = []

    def fail():
        raise EnvironmentFault("tracking: MLflow at sqlite:///x.db: log_batch failed: OperationalError: disk full")

    writer = Writer()
    writer.submit(done.append, 1)
    writer.submit(fail)
    writer.submit(done.append, 2)  # queued behind the failure: not run
    writer._thread.join(timeout=0.5)  # still alive: it waits for more calls
    with pytest.raises(EnvironmentFault, match="disk full"):
        for _ in range(100):  # the failure is raised by the first submit after it happened
            writer.submit(done.append, 3)
            time.sleep(0.01)
    writer.close()  # raised once: closing afterwards is quiet
    assert done[0] == 1 and 2 not in done


def test_close_raises_a_failure_that_no_submit_saw():
    writer = Writer()
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.close()
