"""Checks a method's author runs on their own class: the ones every method of ours passes.

    # tests/test_my_method.py, in your package (docs/adding-a-method.md)
    from harness.method_testing import check_resumes_exactly, load_spec

    def test_my_method_resumes_exactly():
        check_resumes_exactly("my_method.yaml", epochs=3)

A trial of a study checkpoints at every report, and a trial whose worker died, or whose
driver was killed, goes on from its last checkpoint. That is only sound if a trial resumed
after any report ends exactly as one that never stopped: the same reports, the same final
weights. :func:`check_resumes_exactly` runs the trial whole, then resumed after each report
from the state saved there (through bytes, loaded with ``weights_only=True`` as the sweep
loads it), and fails naming the first report and tensor that differ.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from harness.data.datasets import DatasetSplits, load_dataset
from harness.spec.load import load_spec
from harness.spec.schema import BudgetSpec, StudySpec

# The stable import path for method authors: these names stay here whatever moves inside
# the harness (docs/adding-a-method.md).
__all__ = ["check_resumes_exactly", "load_spec", "StudySpec"]


def check_resumes_exactly(spec: StudySpec | str | Path, epochs: int | None = None, config: dict[str, Any] | None = None,
                          data: DatasetSplits | None = None, teacher_state: dict[str, torch.Tensor] | None = None,
                          seed: int = 0) -> list[dict[str, Any]]:
    """Run one trial of ``spec`` whole and resumed after each report; return the whole run's reports.

    ``epochs``: the trial's length (default: the spec's budget); ``config``: the searched knobs'
    values (default: each one's high bound or last choice); ``data``: the study's splits
    (default: loaded as the spec says); ``teacher_state``: the teacher's weights (default:
    trained now with the spec's recipe)."""
    from harness.study.sweep import trial_splits
    from harness.study.teachers import train_teacher
    from harness.study.trial import run_trial

    spec = spec if isinstance(spec, StudySpec) else load_spec(str(spec))
    if epochs is not None:
        spec = dataclasses.replace(spec, budget=BudgetSpec(epochs=epochs))
    epochs = spec.budget.epochs
    data = data if data is not None else load_dataset(spec.dataset)
    if spec.teacher is not None and teacher_state is None:
        teacher_state = train_teacher(spec, data).state
    shipped = trial_splits(spec, data)  # as the sweep ships them: a data-free trial gets no training images
    if config is None:
        config = {name: d.args[-1] for name, d in spec.searched_params().items()}
    reports, states = [], []

    def keep(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        reports.append(metrics)
        states.append(_through_bytes(state))

    whole = run_trial(config, spec, seed, shipped, teacher_state, keep, checkpoints=True)
    assert len(states) == epochs, f"{len(states)} reports in a trial of {epochs} epochs"
    for after in range(1, epochs):
        again: list[dict[str, Any]] = []
        resumed = run_trial(config, spec, seed, shipped, teacher_state, lambda m, s, again=again: again.append(m),
                            checkpoints=True, resume=states[after - 1])
        assert [r["epoch"] for r in again] == list(range(after + 1, epochs + 1)), \
            f"resumed after report {after}, it reported epochs {[r['epoch'] for r in again]}"
        for theirs, ours in zip(reports[after:], again, strict=True):
            assert theirs["val_acc"] == ours["val_acc"], (
                f"resumed after report {after}: val_acc {ours['val_acc']} at epoch {ours['epoch']}, "
                f"{theirs['val_acc']} in the trial that never stopped")
        expected, got = whole.state_dict(), resumed.state_dict()
        assert expected.keys() == got.keys(), f"resumed after report {after}: other student tensors"
        for name, tensor in expected.items():
            assert torch.equal(tensor, got[name]), f"resumed after report {after}: student tensor '{name}' differs"
    return reports


def _through_bytes(state: dict[str, Any]) -> dict[str, Any]:
    """As a checkpoint file holds it, loaded as the sweep loads it (no pickled code)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
