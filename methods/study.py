"""What a method sees of the study it runs in, before any trial: its knobs' values,
the networks and the budget; and the error it raises when it cannot work with them.

The harness builds a :class:`StudyView` from the validated spec and passes it to
``Method.check_spec``; a :class:`StudyError` there becomes one error line (exit
status 2) before anything runs. Methods never import the harness, so they can
be read and tested without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


class StudyError(ValueError):
    """A study that cannot run as written; the message names the spec field and the fix."""


@dataclass
class Distribution:
    """A searched knob: ``kind`` is uniform, loguniform, int or categorical; ``args``
    its [low, high] bounds or its choices."""

    kind: str
    args: list[Any]


@dataclass(frozen=True)
class Network:
    model: str
    width: float = 1.0
    kwargs: tuple[tuple[str, Any], ...] = ()  # a builder's own arguments, sorted by name


@dataclass(frozen=True)
class StudyView:
    """The parts of a study a method may check."""

    student: Network
    epochs: int  # reports per trial
    teacher: Network | None = None
    substitute: str | None = None  # another data set's name, for substitute-data methods
    knobs: Mapping[str, Any] = field(default_factory=dict)  # knob -> fixed value or Distribution
    student_trained: bool = False  # the student starts as another study's trained network (a chain)

    def searched(self, knob: str) -> bool:
        return isinstance(self.knobs.get(knob), Distribution)

    def values(self, knob: str, default: Any) -> list[Any]:
        """What the study may give ``knob``: its fixed value, its choices or bounds, or ``default``."""
        value = self.knobs.get(knob, default)
        return list(value.args) if isinstance(value, Distribution) else [value]
