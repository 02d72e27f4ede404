"""A finished trial's older checkpoints go once a saved experiment state records its end;
a running trial keeps every one (no Ray cluster needed)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from harness.study.checkpoints import FinishedTrialCheckpoints


def _trial(run: Path, name: str, reports: int) -> SimpleNamespace:
    for k in range(reports):
        (run / name / f"checkpoint_{k:06d}").mkdir(parents=True)
    last = run / name / f"checkpoint_{reports - 1:06d}"
    return SimpleNamespace(trial_id=name, checkpoint=SimpleNamespace(path=str(last)))


def _left(run: Path, name: str) -> list[str]:
    return sorted(p.name for p in (run / name).iterdir())


def test_a_finished_trial_keeps_its_last_checkpoint_after_the_snapshot_that_records_it(tmp_path):
    pruner = FinishedTrialCheckpoints("study")
    ended, _ = _trial(tmp_path, "a", 3), _trial(tmp_path, "b", 2)
    pruner.on_trial_complete(0, [], ended)
    pruner.get_state()  # this snapshot records the end; a resume from the one before would continue 'a'
    assert len(_left(tmp_path, "a")) == 3
    pruner.get_state()
    assert _left(tmp_path, "a") == ["checkpoint_000002"]
    assert len(_left(tmp_path, "b")) == 2  # still running: any of its checkpoints may be the one restored
