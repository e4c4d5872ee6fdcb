"""Ray for kdscale: the process settings it needs before `import ray`, and starting or joining it.

Tune's own console tables and per-trial CSV/JSON/TensorBoard files are off (kdscale prints its own
progress and keeps its own records), log lines are not de-duplicated across workers, and Tune's
SIGINT handler is off (kdscale's own lets running trials save first: kdscale.engine.trials).
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own console tables; our progress replaces them
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard files per trial
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # ours asks trials to save first (engine.trials)

import ray  # noqa: E402


def init_ray(address: str | None, verbose: bool) -> bool:
    """Start or join Ray; True if this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    quiet = logging.INFO if verbose else logging.ERROR
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=verbose, logging_level=quiet,
                                  configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count(), **kwargs)
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None, verbose: bool = False, start: bool = True):
    """Ray for the duration of a block (started quietly as the engine starts it, stopped at the end
    if this block started it), so that a tuning and the studies after it share one start."""
    started = False
    if start:
        started = init_ray(address, verbose)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
