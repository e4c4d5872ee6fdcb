"""One small registry type for models, data sets and objectives.

A name maps to a builder. Registering a name twice is an error (torchdistill's silent overwrite is
the bug this avoids); a failed lookup lists the known names so the user can fix a typo at once.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from kdscale.errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # "model", "dataset", ...: used in error messages
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry
        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise SpecError(f"{self.kind}: unknown {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
