"""The one exception type for bad input: its message names the field, the value and what is allowed.

The CLI and the studies print it as one line and exit non-zero, before any compute.
"""


class SpecError(ValueError):
    pass
