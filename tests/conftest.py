import os
import tempfile

import pytest

# Every test run gets its own cache (data chunks, teachers): nothing is read from or left in ~/.cache.
_SESSION_CACHE = tempfile.mkdtemp(prefix="kdscale-test-cache-")
os.environ["KDSCALE_CACHE"] = _SESSION_CACHE
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def session_cache():
    return _SESSION_CACHE
