"""A name -> entry registry, in the manner of timm's ``@register_model``.

Methods, models and data sets each have one; an unknown name is a
:class:`~methods.study.StudyError` that suggests the closest registered one.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from methods.study import StudyError

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
            raise StudyError(f"{where}unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or the list of valid names."""
    choices = sorted(map(str, choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5) if isinstance(name, str) else []
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(choices)})"
