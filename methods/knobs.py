"""Declaring a method's knobs, and the one rule by which spec values become typed values.

``Params`` dataclasses declare each field with :func:`knob`, so that a study
spec is checked against the method's own limits before any trial runs: a
negative temperature or a pruning ratio of 1.5 is one error line, not a
study of failed or meaningless trials. :func:`coerce` reads every scalar of a
spec, the harness's own fields and the methods' knobs alike.
"""
from __future__ import annotations

import math
import reprlib
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
            return f"{'above' if self.low_open else 'at least'} {format_number(self.low)}"
        low, high = format_number(self.low), format_number(self.high)
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def format_number(value: float) -> str:
    """A number as a person writes it: whole numbers in full, others in short."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
UNIT = Bounds(0, 1)  # weights of a mix, probabilities
MOMENTUM = Bounds(0, 1, high_open=True)
COUNT = Bounds(1)  # sizes, steps, epochs


def knob(default: Any, bounds: Bounds | None = None, *, choices: tuple[Any, ...] | None = None,
         help: str = "") -> Any:
    """A ``Params`` field: its default, its bounds (numbers) or named values, and what it does
    (shown by ``harness list`` and in docs/methods.md)."""
    metadata = {key: value for key, value in (("bounds", bounds), ("choices", choices)) if value is not None}
    return field(default=default, metadata={**metadata, "help": help})


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def coerce(kind: type, value: Any, bounds: Bounds | None = None) -> Any:
    """``value`` as a ``kind`` (bool, int, float or str) within ``bounds``; other kinds pass.

    Numbers may come as text (YAML 1.1 reads ``1e-3`` as a string) and must be
    finite; an integer must be whole (``64.0`` is 64, ``64.5`` is refused); a
    string may be written as a number (``skip: 3``); true and false are only
    ever booleans. The ``ValueError`` says what was expected and what came.
    """
    if kind not in _EXPECTED:
        return value
    refused = ValueError(f"expected {_EXPECTED[kind]}, got {show(value)}")
    if kind is bool or isinstance(value, bool):
        if kind is bool and isinstance(value, bool):
            return value
        raise refused
    if kind is str:
        if isinstance(value, (str, int, float)):
            return str(value)
        raise refused
    try:
        parsed = float(value)
    except (TypeError, ValueError, OverflowError):
        raise refused from None
    if not math.isfinite(parsed) or (kind is int and not parsed.is_integer()):
        raise refused
    parsed = int(parsed) if kind is int else parsed
    if bounds is not None and parsed not in bounds:
        raise ValueError(f"must be {bounds}, got {format_number(parsed)}")
    return parsed


def show(value: Any) -> str:
    """A short repr for error lines, built without rendering a huge value whole."""
    return reprlib.repr(value)
