"""kdscale's two exception types, each printed by the CLI and the studies as one line.

SpecError: bad input. Its message names the field, the value and what is allowed; exit status 2,
before any compute.

EnvironmentFault: something outside the input failed or is missing: the storage or the cache (a
full disk, a path that is a file), the tracking server, the cluster's resources, a device, a
damaged results table, another driver holding the study. Its message names what failed and where
(the file, the URI, the resource asked for against what exists); exit status 1.
"""


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
