import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# Every test run gets its own cache (data chunks, teachers): nothing is read from or left in ~/.cache,
# and the cache itself is removed when the run ends.
_SESSION_CACHE = tempfile.mkdtemp(prefix="kdscale-test-cache-")
_OWNER = os.getpid()
atexit.register(lambda: os.getpid() == _OWNER and shutil.rmtree(_SESSION_CACHE, ignore_errors=True))
os.environ["KDSCALE_CACHE"] = _SESSION_CACHE
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def session_cache():
    return _SESSION_CACHE


# A driver process holding one Ray instance for the session; it stops Ray when its stdin closes
# (at the end of the session, or when pytest dies). It prints the address and the auth mode its
# ray.init chose (Ray 2.60 turns token auth on; the token itself is in ~/.ray/auth_token).
_HOLD_RAY = """
import os, sys
import ray
context = ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
print(context.address_info["gcs_address"], os.environ.get("RAY_AUTH_MODE", "disabled"), flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="session")
def ray_address():
    """The address of a Ray instance the study scripts' smoke runs join (tests.scripts.run_script).
    For the session, RAY_AUTH_MODE is the holder's, so that the processes the tests start can join."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_RAY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    line = holder.stdout.readline().split()
    if len(line) != 2:
        holder.kill()
        raise RuntimeError(f"the session's Ray did not start (exit {holder.wait()})")
    address, mode = line
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = mode
    yield address
    holder.stdin.close()
    holder.wait(timeout=120)
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before
