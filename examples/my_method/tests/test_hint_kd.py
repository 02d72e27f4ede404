"""The checks every method of the harness passes, run on this one: `uv run pytest examples/my_method`."""
from __future__ import annotations

from pathlib import Path

from harness.method_testing import check_resumes_exactly, load_spec

SPEC = Path(__file__).resolve().parents[1] / "hint_kd.yaml"
SMALL = ["budget.epochs=3", "asha.grace_period=1", "teacher.recipe={epochs: 2, batch_size: 64}"]


def test_the_spec_and_the_method_pass_the_harness_checks():
    spec = load_spec(str(SPEC), SMALL)  # knob types and bounds, no Ray import, defaults within bounds
    assert spec.method == "my_method.hint_kd:HintKD"


def test_a_trial_resumed_after_any_report_ends_as_if_it_never_stopped():
    reports = check_resumes_exactly(load_spec(str(SPEC), SMALL))
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert reports[-1]["val_acc"] > 0.5  # it learns: the hint does not drown the distillation
