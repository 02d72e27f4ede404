"""User-facing errors: each becomes one line on stderr and exit status 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class HarnessError(Exception):
    """An error caused by the user's input; its message is the whole report."""


class SpecError(HarnessError):
    """The study spec (YAML file or --set override) is invalid."""


class DataError(HarnessError):
    """A dataset cannot be found, read or downloaded."""


class CheckpointError(HarnessError):
    """A teacher checkpoint cannot be loaded into its architecture."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or the list of valid names."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(choices)})"
