"""A name -> entry registry, in the manner of timm's ``@register_model``.

Methods, models and data sets each have one; an unknown name is a
:class:`~methods.study.StudyError` that suggests the closest registered one.
A registry given a base class also finds entries outside it by import path,
``package.module:Class``: a subclass of that base in a module of the user's; and, given an
entry-point group, the entries installed packages declare there, by name.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from methods.study import StudyError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type | None = None, entry_points: str | None = None) -> None:
        self.kind = kind
        self.base = base  # entries by import path must subclass it; None: registered names only
        self.entry_points = entry_points  # the group installed packages name their entries in
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str, field: str | None = None) -> T:
        where = f"{field}: " if field else ""
        if name in self._entries:
            return self._entries[name]
        installed = self.installed()
        if name in installed:
            return self._imported(installed[name], where)
        if self.base is not None and isinstance(name, str) and ":" in name:
            return self._imported(name, where)
        raise StudyError(f"{where}unknown {self.kind} '{name}'{did_you_mean(name, [*self._entries, *installed])}")

    def installed(self) -> dict[str, str]:
        """Entries installed packages declare in the entry-point group: name -> import path
        (``[project.entry-points."<group>"] name = "package.module:Class"``). A name of ours wins."""
        if self.entry_points is None or self.base is None:
            return {}
        return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=self.entry_points)
                if ep.name not in self._entries}

    def _imported(self, name: str, where: str) -> T:
        entry = import_attribute(name, where)
        if not (isinstance(entry, type) and issubclass(entry, self.base)):
            raise StudyError(f"{where}'{name}' is not a {self.kind}: a subclass of {self.base.__name__} was expected")
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_attribute(name: str, where: str = "", error: type[Exception] = StudyError) -> object:
    """What ``package.module:attribute`` names (None if the module lacks it); a module that
    cannot be imported is one ``error`` line, prefixed by ``where``."""
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way while importing
        raise error(f"{where}cannot import '{module_name}' ({type(exc).__name__}: {exc}); "
                         f"is its folder in `code:` (or --code)?") from None
    return getattr(module, attribute, None)


def import_function(name: str, field: str, error: type[Exception] = StudyError) -> Callable[..., Any]:
    """The function ``package.module:function`` names (a user's loader or network factory),
    or one ``error`` line naming ``field``."""
    function = import_attribute(name, f"{field}: ", error)
    if not callable(function):
        module_name, _, attribute = name.partition(":")
        raise error(f"{field}: '{module_name}' has no function '{attribute}'")
    return function


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or the list of valid names."""
    choices = sorted(map(str, choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5) if isinstance(name, str) else []
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(choices)})"
