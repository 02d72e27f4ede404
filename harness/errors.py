"""User-facing errors: each becomes one line on stderr and exit status 2."""
from __future__ import annotations


class HarnessError(Exception):
    """An error caused by the user's input; its message is the whole report."""


class SpecError(HarnessError):
    """The study spec (YAML file or --set override) is invalid."""


class DataError(HarnessError):
    """A dataset cannot be found, read or downloaded."""


class DataMissing(DataError):
    """A data set's files are not where the spec says (and were not, or could not be, downloaded)."""


class CheckpointError(HarnessError):
    """A teacher checkpoint cannot be loaded into its architecture."""

