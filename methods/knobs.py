"""Declaring a method's knobs: a default, and the values the knob may take.

``Params`` dataclasses declare each field with :func:`knob`, so that a study
spec is checked against the method's own limits before any trial runs: a
negative temperature or a pruning ratio of 1.5 is one error line, not a
study of failed or meaningless trials.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """An interval of allowed values; either end may be open or infinite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
UNIT = Bounds(0, 1)  # weights of a mix, probabilities
MOMENTUM = Bounds(0, 1, high_open=True)
COUNT = Bounds(1)  # sizes, steps, epochs


def knob(default: Any, bounds: Bounds | None = None, *, choices: tuple[Any, ...] | None = None) -> Any:
    """A ``Params`` field: its default, and its bounds (numbers) or named values."""
    metadata = {key: value for key, value in (("bounds", bounds), ("choices", choices)) if value is not None}
    return field(default=default, metadata=metadata)
