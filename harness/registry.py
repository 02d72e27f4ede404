"""A name -> factory registry, in the manner of timm's ``@register_model``."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from harness.errors import SpecError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str, field: str | None = None) -> T:
        try:
            return self._entries[name]
        except KeyError:
            where = f"{field}: " if field else ""
            raise SpecError(
                f"{where}unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
