"""The module paths of studies written before ``harness/`` was grouped into subpackages.

Tune pickles a study's searcher, scheduler, callbacks and stopper into its run folder by
their classes' module paths (``harness.search.StudySearch``, ``harness.results.ResultsWriter``
...), and ``--resume`` unpickles them. While a sweep restores such a run, the old paths
name today's modules; outside it they do not exist.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Iterator

# Old module -> today's: the modules whose objects a run folder can hold (the study layer
# and below; the CLI and the export are never pickled). Old names that are packages today
# (harness.data, harness.networks, harness.measure, harness.spec) are left out: aliasing
# them would break importing their submodules meanwhile, and Tune pickles nothing of them
# (the trial's data and spec are given anew to the restored trainable).
MOVED = {
    "harness.search": "harness.study.search",
    "harness.results": "harness.study.results",
    "harness.checkpoints": "harness.study.checkpoints",
    "harness.progress": "harness.study.progress",
    "harness.sweep": "harness.study.sweep",
    "harness.trial": "harness.study.trial",
    "harness.teachers": "harness.study.teachers",
    "harness.tracking": "harness.study.tracking",
    "harness.location": "harness.store.location",
    "harness.storage": "harness.store.lock",
    "harness.tables": "harness.store.tables",
    "harness.optuna_storage": "harness.store.journal",
    "harness.batches": "harness.data.batches",
    "harness.zoo": "harness.networks.zoo",
    "harness.latency": "harness.measure.latency",
}


@contextlib.contextmanager
def old_module_paths() -> Iterator[None]:
    """Unpickling inside this block finds the classes of a run folder written before the move;
    the old names are gone again after it."""
    saved = {old: sys.modules.get(old) for old in MOVED}
    try:
        for old, new in MOVED.items():
            sys.modules[old] = importlib.import_module(new)
        yield
    finally:
        for old, module in saved.items():
            if module is None:
                sys.modules.pop(old, None)
            else:
                sys.modules[old] = module
