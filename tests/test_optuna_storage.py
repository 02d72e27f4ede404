"""Each seed's Optuna study lives in a storage: a searcher Tune restores from a snapshot
reopens it, and no trial is counted twice when the storage is ahead of the snapshot."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from harness.errors import SpecError
from harness.store.journal import open_storage, register, study_name
from harness.study.search import make_searcher
from tests.support.specs import small_spec


def _report(searcher, trial_id, epoch, value=0.5):
    searcher.on_trial_result(trial_id, {"val_acc": value, "training_iteration": epoch})


@pytest.mark.parametrize("url", [None, "sqlite:///{tmp}/optuna.db"])
def test_a_restored_searcher_reopens_its_storage_and_counts_no_trial_twice(tmp_path, url):
    spec = small_spec(**{"budget.epochs": "4", **({"search.storage": url.format(tmp=tmp_path)} if url else {})})
    storage = open_storage(spec.search.storage, tmp_path)
    name = study_name(spec.study, 0)
    register(name, storage)
    searcher = make_searcher(spec, 0, storage)
    searcher.set_search_properties(None, None, {})
    searcher.suggest("a")
    _report(searcher, "a", 1)
    searcher.suggest("b")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot: a at epoch 1, b asked
    for epoch in (2, 3, 4):
        _report(searcher, "a", epoch, 0.9)
    searcher.on_trial_complete("a", {"val_acc": 0.9, "training_iteration": 4})  # ends after the snapshot
    searcher.suggest("c")  # asked after the snapshot; then the driver dies

    restored = make_searcher(spec, 0, storage)
    restored.restore(str(tmp_path / "searcher.pkl"))
    _report(restored, "a", 2, 0.1)  # Tune runs 'a' again from its checkpoint: the storage's record stands
    restored.on_trial_complete("a", {"val_acc": 0.1, "training_iteration": 4})
    _report(restored, "b", 1)
    restored.on_trial_complete("b", {"val_acc": 0.6, "training_iteration": 2})  # stopped by ASHA
    restored.suggest("d")  # Tune's replacement for 'c'

    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                         TrialState.RUNNING]
    assert trials[0].value == pytest.approx(0.9) and trials[0].intermediate_values == {1: 0.5, 2: 0.9, 3: 0.9, 4: 0.9}
    assert trials[1].intermediate_values == {1: 0.5, 2: 0.6}  # the report that stopped it too


def test_a_password_in_an_optuna_storage_url_is_refused():
    with pytest.raises(SpecError, match=r"^search.storage: the URL carries a password"):
        small_spec(**{"search.storage": "postgresql://user:secret@db.example/optuna"})
