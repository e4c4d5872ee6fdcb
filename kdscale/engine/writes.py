"""The driver's MLflow writes during a study's trials, off Tune's loop (kdscale.engine.trials)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


class Writes:
    """The driver's MLflow writes during the trials, in their order, on one thread of their own. A
    finished trial's run is four SQLite transactions (about 80 ms, 2026-12-01); made in Tune's callback
    they held Tune's loop, so the slot of a finished pack of 16 stayed idle 0.4-0.6 s before the next
    pack started. The first write's fault (an MLflow server gone) skips the writes after it and is
    raised at the callback's next call or at the end. Rows reach the store before their runs are
    written: runs a driver did not write (killed, or stopped by a second Ctrl-C) are the next driver's
    to write (kdscale.engine.driver._sync_tracker)."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="kdscale-mlflow-writes")
        self.fault: BaseException | None = None

    def __reduce__(self):  # Tune pickles its callbacks with the experiment's state: a copy starts empty
        return Writes, ()

    def submit(self, call, *args) -> None:
        self.check()
        self.pool.submit(self._write, call, *args)

    def _write(self, call, *args) -> None:
        if self.fault is None:
            try:
                call(*args)
            except BaseException as error:
                self.fault = error

    def check(self) -> None:
        if self.fault is not None:
            raise self.fault

    def close(self, drain: bool = True, raise_fault: bool = True) -> None:
        """Wait for the writes (`drain`), else only for the one under way."""
        self.pool.shutdown(wait=True, cancel_futures=not drain)
        if raise_fault:
            self.check()
