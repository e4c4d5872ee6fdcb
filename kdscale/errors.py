"""kdscale's two exception types, each printed by the CLI and the studies as one line, and the
checks of spec fields that raise SpecError.

SpecError: bad input. Its message names the field, the value and what is allowed; exit status 2,
before any compute.

EnvironmentFault: something outside the input failed or is missing: the storage or the cache (a
full disk, a path that is a file), the tracking server, the cluster's resources, a device, a
damaged results table, another driver holding the study. Its message names what failed and where
(the file, the URI, the resource asked for against what exists); exit status 1.
"""
import math
from typing import Any


class SpecError(ValueError):
    pass


class EnvironmentFault(RuntimeError):
    pass


def os_reason(error: OSError) -> str:
    """An OSError as a short reason: '[Errno 28] No space left on device' (no path: the caller names it)."""
    if getattr(error, "errno", None) and getattr(error, "strerror", None):
        return f"[Errno {error.errno}] {error.strerror}"
    return " ".join(str(error).split())[:200] or type(error).__name__


def find_fault(error: BaseException | None) -> EnvironmentFault | None:
    """The EnvironmentFault an exception is, wraps or was raised while handling (Ray and Tune wrap a
    worker's or a callback's exception in their own), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, EnvironmentFault):
            return error
        cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError
        if isinstance(cause, BaseException):
            found = find_fault(cause)
            if found is not None:
                return found
        error = error.__cause__ or error.__context__
    return None


# The checks of kdscale.config's specs (and of the search's settings), each a SpecError naming
# the spec, the field, the value and what is allowed.
def fail(spec: str, field_name: str, value: Any, allowed: str) -> None:
    raise SpecError(f"{spec}.{field_name}={value!r} is invalid: {allowed}")


def check_int(spec: str, name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        fail(spec, name, value, f"must be an integer >= {minimum}")


def check_float(spec: str, name: str, value: Any, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        if math.isinf(high):  # "in (0.0, inf]" would admit inf itself
            fail(spec, name, value, f"must be a finite number {'>' if low_open else '>='} {low:g}")
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        fail(spec, name, value, f"must be a finite number in {lo}{low:g}, {high:g}{hi}")


def check_choice(spec: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(spec, name, value, f"must be one of {', '.join(choices)}")
