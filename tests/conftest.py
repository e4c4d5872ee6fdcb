import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# Every test run gets its own cache (data chunks, teachers): nothing is read from or left in ~/.cache,
# and the cache itself is removed when the run ends. Under pytest-xdist the controlling process makes
# it and its workers (which inherit its environment) share it, so a teacher is trained once per run.
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("KDSCALE_TEST_SESSION_CACHE"):
    _SESSION_CACHE = os.environ["KDSCALE_TEST_SESSION_CACHE"]
else:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="kdscale-test-cache-")
    _OWNER = os.getpid()
    atexit.register(lambda: os.getpid() == _OWNER and shutil.rmtree(_SESSION_CACHE, ignore_errors=True))
    os.environ["KDSCALE_TEST_SESSION_CACHE"] = _SESSION_CACHE
os.environ["KDSCALE_CACHE"] = _SESSION_CACHE
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Under pytest-xdist the workers share the cores: torch's (OpenMP's) threads per worker are the
# worker's share, as for the processes it starts, since threads beyond the cores spin against each
# other (the fast tier took 179 s on 2 workers of 2 threads each, 2 cores).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
    import torch

    torch.set_num_threads(_THREADS)
# Token authentication from the start, for every Ray this process starts or joins and every process
# it starts: ray.init turns it on by itself when it starts a Ray (Ray 2.60; the token is generated
# into ~/.ray/auth_token), but a process whose first Ray was a ray.cluster_utils.Cluster keeps
# 'disabled' and can no longer start one after that (InvalidAuthToken from its own GCS).
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture(scope="session")
def session_cache():
    return _SESSION_CACHE


# A driver process holding one Ray instance for the session; it stops Ray when its stdin closes
# (at the end of the session, or when pytest dies). It prints the address.
_HOLD_RAY = """
import os, sys
import ray
context = ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="session")
def ray_address():
    """The address of a Ray instance the study scripts' smoke runs join (tests.scripts.run_script)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_RAY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    line = holder.stdout.readline().split()
    if len(line) != 1:
        holder.kill()
        raise RuntimeError(f"the session's Ray did not start (exit {holder.wait()})")
    yield line[0]
    holder.stdin.close()
    holder.wait(timeout=120)


# The order in which pytest-xdist hands files to its workers (--dist loadfile --no-loadscope-reorder:
# in collection order, one file at a time to whichever worker is free): the longest first, so that
# no worker starts a long file while the other runs out of work. By default xdist sends the files
# with the most tests first, and those are the fast ones: the study files came last. The first ones
# below by their time in CI's serial run of 2026-11-30, then every other file with slow tests, then
# the rest.
LONGEST_FIRST = ("test_engine.py", "test_studies.py", "test_kappa_search.py", "test_studies_supervision.py",
                 "test_reliability.py", "test_studies_scaling.py", "test_fair_recipe.py", "test_student_init.py",
                 "test_state_tracking.py", "test_transfer.py")


def pytest_collection_modifyitems(items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the order of the files on the command line
    slow = {item.path.name for item in items if item.get_closest_marker("slow")}

    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST) + (name not in slow)

    items.sort(key=rank)  # stable: each file's tests keep their order
