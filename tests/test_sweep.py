"""A small real study through Ray Tune, Optuna and ASHA."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from harness.errors import SpecError
from harness.store.tables import read_table
from harness.study.search import asha_rungs, chance_floor, make_scheduler, make_searcher, startup_trials
from tests.support.specs import small_spec


def test_optuna_is_told_stopped_trials_were_pruned():
    spec = small_spec(**{"budget.epochs": "4"})
    searcher = make_searcher(spec, seed=0)
    searcher.set_search_properties(None, None, {})
    for trial_id, last_epoch in (("stopped", 2), ("finished", 4)):
        searcher.suggest(trial_id)
        for epoch in range(1, last_epoch + 1):
            searcher.on_trial_result(trial_id, {"val_acc": 0.1 * epoch, "training_iteration": epoch})
        searcher.on_trial_complete(trial_id, {"val_acc": 0.1 * last_epoch, "training_iteration": last_epoch})
    searcher.suggest("failed")
    searcher.on_trial_complete("failed", None, error=True)
    states = [t.state for t in searcher.optuna_study.trials]
    assert states == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL]
    assert searcher.optuna_study.best_value == pytest.approx(0.4)


@pytest.mark.parametrize("num_samples, given, expected", [(16, None, 4), (8, None, 4), (48, None, 10), (16, 7, 7)])
def test_tpe_startup_trials_scale_with_the_study(num_samples, given, expected):
    changes = {"search.num_samples": str(num_samples)} | ({"search.startup_trials": str(given)} if given else {})
    assert startup_trials(small_spec(**changes)) == expected


def _suggested_lrs(searcher, count):
    """Suggest ``count`` trials one after another, each finishing with val_acc peaked at lr 0.02."""
    searcher.set_search_properties(None, None, {})
    lrs = []
    for i in range(count):
        lr = searcher.suggest(str(i))["lr"]
        searcher.on_trial_complete(str(i), {"val_acc": -abs(math.log(lr / 0.02)), "training_iteration": 2})
        lrs.append(lr)
    return lrs


def test_tpe_is_random_for_its_startup_trials_then_models():
    tpe = _suggested_lrs(make_searcher(small_spec(**{"search.startup_trials": "3"}), seed=0), 6)
    random = _suggested_lrs(make_searcher(small_spec(**{"search.searcher": "random"}), seed=0), 6)
    assert tpe[:3] == random[:3] and tpe[3:] != random[3:]


@pytest.mark.parametrize("objectives, joint", [
    ("[{metric: val_acc, mode: max}]", True),
    ("[{metric: val_acc, mode: max}, {metric: macs, mode: min}]", False)])
def test_tpe_models_the_knobs_jointly_with_a_constant_liar(objectives, joint):
    # Optuna 4's defaults differed (independent TPE, no liar): the harness must not follow them.
    spec = small_spec(**{"search.searcher": "tpe", "search.objectives": objectives,
                         "search.space.tau": "{uniform: [1.0, 4.0]}"})
    searcher = make_searcher(spec, seed=0)
    searcher.set_search_properties(None, None, {})
    for trial_id in "012":  # the joint space is inferred from finished trials
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, {"val_acc": 0.5, "macs": 1.0, "training_iteration": 2})
    searcher.suggest("3")
    study = searcher.optuna_study
    knobs_modelled_jointly = study.sampler.infer_relative_search_space(study, study.trials[-1])
    assert set(knobs_modelled_jointly) == ({"lr", "tau"} if joint else set())
    assert study.sampler._constant_liar  # no public accessor


def test_the_ray_internals_search_extends_are_there_or_refused_in_one_line():
    """Fails, naming the attributes, when a Ray release drops what StudySearch and StudyScheduler read."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from harness.errors import HarnessError
    from harness.study.search import RAY_INTERNALS, require_internals

    spec = small_spec()
    for built, base in ((make_searcher(spec, seed=0), OptunaSearch), (make_scheduler(spec), ASHAScheduler)):
        missing = [name for name in RAY_INTERNALS[base] if not hasattr(built, name)]
        assert not missing, f"this Ray's {base.__name__} no longer has {missing}: adapt harness/study/search.py"
    with pytest.raises(HarnessError, match=r"^ray [\d.]+: its OptunaSearch no longer has _ot_study, _ot_trials, "
                                           r"_completed_trials, _storage, _study_name, _sampler, "
                                           r"which harness/study/search.py extends; install"):
        require_internals(object(), OptunaSearch)


def test_startup_trials_must_be_positive():
    with pytest.raises(SpecError, match="search.startup_trials"):
        small_spec(**{"search.startup_trials": "0"})


@pytest.mark.parametrize("budget, grace, factor, rungs", [
    (20, 4, 2, [4, 8, 16]), (18, 2, 3, [2, 6, 18]), (9, 1, 3, [1, 3, 9]), (5, 5, 2, [5]), (12, 3, 2, [3, 6, 12])])
def test_asha_rungs_are_the_milestones_ray_uses(budget, grace, factor, rungs):
    spec = small_spec(**{"budget.epochs": str(budget), "asha.grace_period": str(grace),
                         "asha.reduction_factor": str(factor)})
    assert asha_rungs(spec) == rungs
    ray_milestones = sorted(m for m, _ in make_scheduler(spec)._brackets[0]._rungs)  # Ray's own, private
    assert ray_milestones == rungs


def test_chance_floor_is_the_majority_class_rate_plus_three_standard_errors():
    labels = np.array([0] * 300 + [1] * 100 + [2] * 100)  # guessing class 0 scores 60%
    assert chance_floor(labels) == pytest.approx(0.6 + 3 * math.sqrt(0.6 * 0.4 / 500))


BALANCED = np.repeat(np.arange(10), 100)  # chance 10%, floor 10% + 3 x 0.95% = 12.8%


def _scheduler_decisions(spec, reports, labels=BALANCED):
    """ASHA's answer to each (trial, epoch, val_acc) report, in order."""
    scheduler = make_scheduler(spec, labels)
    trials = {}
    answers = []
    for name, epoch, value in reports:
        if name not in trials:
            trials[name] = SimpleNamespace(trial_id=name)
            scheduler.on_trial_add(None, trials[name])
        answers.append(scheduler.on_trial_result(None, trials[name], {
            "training_iteration": epoch, "val_acc": value, "val_loss": 1 - value}))
    return answers


def test_the_scheduler_starts_the_trial_rays_fifo_scheduler_would_looking_only_at_live_trials():
    from ray.tune.schedulers import FIFOScheduler

    class Trial:  # hashable, as Tune's trials are
        def __init__(self, trial_id):
            self.trial_id, self.status = trial_id, "TERMINATED"

    rng = np.random.default_rng(0)
    scheduler = make_scheduler(small_spec())
    trials = []
    for i in range(60):
        trials.append(Trial(f"t{i:03d}"))
        scheduler.on_trial_add(None, trials[-1])
    for _ in range(50):
        for trial in trials:
            trial.status = rng.choice(["TERMINATED"] * 8 + ["PENDING", "PAUSED", "RUNNING"])
        live = {t for t in trials if t.status != "TERMINATED"}
        # a set, as Tune keeps it: the first trial in it is seldom the first to have arrived
        controller = SimpleNamespace(get_trials=lambda: trials, get_live_trials=lambda live=live: live)
        assert scheduler.choose_trial_to_run(controller) is FIFOScheduler().choose_trial_to_run(controller)
    controller = SimpleNamespace(get_trials=lambda: trials, get_live_trials=lambda: set())
    assert scheduler.choose_trial_to_run(controller) is None


GRACE_2 = {"budget.epochs": "9", "asha.grace_period": "2", "asha.reduction_factor": "3"}
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def test_asha_stops_a_first_trial_no_better_than_guessing_from_the_grace_period_on():
    reports = [("guessing", 1, 0.10), ("guessing", 2, 0.11),          # first at rung 2: plain ASHA lets it go on
               ("learning", 1, 0.10), ("learning", 2, 0.14), ("learning", 3, 0.60),
               ("learning", 4, 0.12)]                                 # collapsed between rungs
    assert _scheduler_decisions(small_spec(**GRACE_2), reports) == [CONTINUE, STOP, CONTINUE, CONTINUE, CONTINUE,
                                                                     STOP]


@pytest.mark.parametrize("changes, labels", [
    ({"asha.stop_at_chance": "false"}, BALANCED),
    ({"search.objectives": "[{metric: val_loss, mode: min}]"}, BALANCED),  # the floor is an accuracy
    ({}, None),                                                           # no labels given
])
def test_without_the_chance_floor_the_first_trial_at_a_rung_goes_on(changes, labels):
    reports = [("guessing", 1, 0.10), ("guessing", 2, 0.11), ("guessing", 4, 0.10)]
    assert _scheduler_decisions(small_spec(**GRACE_2, **changes), reports, labels) == [CONTINUE] * 3


def test_a_diverging_first_trial_stops_at_the_grace_period(ray_session, studies):
    from harness.study.sweep import run_sweep

    # every knob fixed: one trial, no searcher
    spec = small_spec(**{"search.num_samples": "1", "budget.epochs": "4", "search.space.lr": "30.0",
                         "measure.repeats": "3"})
    trials = pd.read_parquet(run_sweep(spec, storage=str(studies)) / "trials.parquet")
    assert trials.status.tolist() == ["stopped"] and trials.epochs_done.tolist() == [1]
    assert trials.val_acc.iloc[0] < 0.2


def test_a_study_run_one_trial_at_a_time_repeats_exactly(ray_session, tmp_path):
    """Seeded trials and a seeded TPE that sees results in one order: the same rows twice."""
    from harness.study.sweep import run_sweep

    spec = small_spec(**{"search.num_samples": "5", "search.startup_trials": "2", "search.max_concurrent": "1",
                         "search.space.tau": "{uniform: [1.0, 8.0]}", "budget.epochs": "4",
                         "asha.grace_period": "1", "asha.reduction_factor": "2", "measure.repeats": "3"})
    columns = ["param_lr", "param_tau", "status", "epochs_done", "val_acc", "test_acc"]
    runs = [pd.read_parquet(run_sweep(spec, storage=str(tmp_path / str(i))) / "trials.parquet")[columns]
            for i in range(2)]
    assert runs[0]["param_lr"].nunique() == 5
    pd.testing.assert_frame_equal(runs[0], runs[1])


@pytest.fixture(scope="module")
def study(ray_session, tmp_path_factory, teacher_cache):
    from harness.study.sweep import run_sweep

    spec = small_spec(**{
        "search.searcher": "random", "search.num_samples": "4", "seeds": "[0, 1]",
        "budget.epochs": "3", "asha.reduction_factor": "2",
        "asha.stop_at_chance": "false",  # the first trial at each rung goes on: every seed completes one
        "search.space.momentum": "{categorical: [0.9, 0.5]}",
        "measure.repeats": "3",
    })
    # A trial that fails at start: momentum -1, put past the spec's checks, is refused when the trial builds its knobs.
    spec.search.space["momentum"].args[1] = -1.0
    storage = tmp_path_factory.mktemp("storage")
    (storage / "teachers").symlink_to(teacher_cache, target_is_directory=True)  # the session's teachers
    folder = run_sweep(spec, storage=str(storage))
    return spec, folder


def test_study_writes_one_row_per_trial_with_the_documented_columns(study):
    spec, folder = study
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 8 and trials.trial_id.is_unique
    assert sorted(trials.seed.unique()) == [0, 1]
    expected = {"study", "method", "pair", "dataset", "config", "status", "seed", "epochs_done", "budget_epochs",
                "val_acc", "test_acc", "params", "size_bytes", "macs", "latency_b1_ms", "latency_ms",
                "device", "duration_s", "started_at", "ended_at", "versions", "teacher_test_acc", "node", "error"}
    assert expected <= set(trials.columns)
    assert set(trials.status) <= {"completed", "stopped", "error"}
    assert json.loads(trials.versions.iloc[0]).keys() >= {"torch", "ray", "optuna"}


def test_a_failing_trial_is_recorded_and_the_others_survive(study):
    _, folder = study
    trials = pd.read_parquet(folder / "trials.parquet")
    errored = trials[trials.status == "error"]
    assert len(errored) >= 1 and (errored.param_momentum == -1.0).all()
    assert errored.error.str.contains("momentum").all()
    finished = trials[trials.status != "error"]
    assert len(finished) >= 1 and (finished.param_momentum == 0.9).all()


def test_completed_and_stopped_trials_are_told_apart(study):
    spec, folder = study
    trials = pd.read_parquet(folder / "trials.parquet")
    completed = trials[trials.status == "completed"]
    stopped = trials[trials.status == "stopped"]
    assert len(completed) >= len(spec.seeds)
    assert (completed.epochs_done == spec.budget.epochs).all()
    assert completed[["test_acc", "params", "macs", "latency_ms"]].notna().all().all()
    assert (stopped.epochs_done < spec.budget.epochs).all()


def test_completed_trials_latency_is_measured_again_after_the_search(study):
    spec, folder = study
    trials = pd.read_parquet(folder / "trials.parquet")
    completed = trials[trials.status == "completed"]
    assert len(completed) and (completed.latency_rounds == spec.measure.rounds).all()
    assert completed[["trial_latency_ms", "teacher_latency_ms", "trial_teacher_latency_ms"]].notna().all().all()
    assert trials[trials.status != "completed"].latency_ms.isna().all()


def test_every_report_is_an_epoch_row(study):
    _, folder = study
    trials = pd.read_parquet(folder / "trials.parquet")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    ran = trials[trials.status != "error"]
    assert len(epochs) == ran.epochs_done.sum()
    assert set(epochs.trial_id) == set(ran.trial_id)
    assert epochs.val_acc.between(0, 1).all()


def test_study_file_records_the_protocol_and_teacher(study):
    _, folder = study
    info = json.loads((folder / "study.json").read_text())
    assert info["dataset"]["val"] > 0 and info["teacher"]["test_acc"] > 0
    assert info["ended_at"] and info["spec"]["method"] == "kd"


def test_a_leaderboard_measures_studies_run_apart_in_one_window(ray_session, studies, capsys):
    """The issue's case: a kd and a scratch study of one student, run one after the other."""
    from harness.cli.main import main
    from harness.study.remeasure import finished_students
    from harness.study.sweep import run_sweep

    spec = small_spec(**{"budget.epochs": "2", "asha.grace_period": "2", "measure.repeats": "3"})
    folder = run_sweep(spec, storage=str(studies))
    rows = pd.read_parquet(folder / "trials.parquet")
    found, same_as = finished_students(spec, folder, dict(zip(rows.trial_id, rows.network, strict=True)))
    # One checkpoint read per network: the other completed trials only point at it.
    assert len(found) == 1 and len(found) + len(same_as) == (rows.status == "completed").sum() >= 2
    other = run_sweep(small_spec(**{"study": "alone", "method": "scratch", "teacher": "null",
                                    "search.num_samples": "1", "search.space.lr": "0.05", "budget.epochs": "1",
                                    "measure.rounds": "0"}), storage=str(studies))
    before = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert "latency_rounds" not in pd.read_parquet(other / "trials.parquet")  # measure.rounds: 0

    # As they are: two windows, said so; the shared network still gets one (pooled) figure.
    assert main(["leaderboard", str(studies), "--no-remeasure"]) == 0
    assert "not one window" in (studies / "leaderboard.md").read_text()
    board = pd.read_parquet(studies / "leaderboard.parquet").set_index("study")
    assert board.loc["test", "latency_ms"] == board.loc["alone", "latency_ms"]

    assert main(["leaderboard", str(studies)]) == 0
    assert "measuring 2 finished studies (3 completed trials) again in one window" in capsys.readouterr().out
    trials = pd.concat([pd.read_parquet(f / "trials.parquet") for f in (folder, other)])
    completed = trials[trials.status == "completed"]
    assert completed.latency_window.nunique() == 1 and completed.network.nunique() == 1
    assert completed.latency_ms.nunique() == 1 and (completed.latency_rounds == 5).all()
    board = pd.read_parquet(studies / "leaderboard.parquet").set_index("study")
    assert board.loc["test", "latency_ms"] == board.loc["alone", "latency_ms"]
    assert board.loc["test", "latency_rank"] == board.loc["alone", "latency_rank"] == 1
    assert "measured together in one window" in (studies / "leaderboard.md").read_text()
    assert main(["leaderboard", str(studies)]) == 0
    assert "digits (cpu): latencies already measured in one window" in capsys.readouterr().out

    assert main(["remeasure", str(folder), str(other), "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{folder}: latency of" in out and f"{other}: latency of 1 completed trial(s), 1 distinct" in out
    after = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    completed = after.status == "completed"
    assert (after.loc[completed, "latency_rounds"] == 2).all()
    assert after.loc[completed, "trial_latency_ms"].equals(before.loc[completed, "trial_latency_ms"])
    assert (pd.read_parquet(other / "trials.parquet").latency_rounds == 2).all()


def test_only_finished_studies_are_measured_again(tmp_path, capsys):
    import json

    from harness.cli.main import main

    assert main(["remeasure", str(tmp_path)]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["remeasure", str(tmp_path / "absent")]) == 2
    assert "absent: no such study folder" in capsys.readouterr().err
    folder = tmp_path / "cut-short"
    folder.mkdir()
    spec = small_spec()
    (folder / "study.json").write_text(json.dumps({"spec": json.loads(json.dumps(spec.to_dict(), default=str)),
                                                   "ended_at": None}))
    assert main(["remeasure", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the study has not finished" in err and "--resume" in err


def test_when_measuring_again_fails_the_in_trial_latency_stands(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    import harness.study.sweep
    from harness.study.results import ResultsWriter

    spec = small_spec(**{"budget.epochs": "1"})
    writer = ResultsWriter(spec, tmp_path, None)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01},
                            last_result={"training_iteration": 1, "epoch": 1, "params": 10, "latency_ms": 9.0})
    writer.on_trial_start(0, [], trial)
    writer.on_trial_complete(0, [], trial)

    def broken(*args, **kwargs):
        raise ValueError("checkpoint unreadable\nstate_dict mismatch")

    monkeypatch.setattr(harness.study.sweep, "measure_again", broken)
    data = SimpleNamespace(num_classes=10, input_shape=(1, 28, 28), mean=(0.5,), std=(0.3,))
    harness.study.sweep.remeasure_latency(spec, tmp_path, data, None, writer)
    assert "measuring latency again failed (state_dict mismatch)" in capsys.readouterr().out
    row = read_table(tmp_path, "trials").iloc[0]
    assert row.latency_ms == 9.0 and "trial_latency_ms" not in row


@pytest.mark.parametrize("samples, period", [(16, "1"), (400, "1"), (4000, "10")])
def test_each_study_sets_how_often_tune_saves_its_state_from_its_size(tmp_path, monkeypatch, samples, period):
    """Every save writes every trial so far: a large study saves less often (benchmarks/scale.py)."""
    import os

    import harness.study.sweep
    from harness.errors import HarnessError

    def stop(address, code, **options):  # the period is set before Ray starts
        raise HarnessError("stopped before Ray")

    monkeypatch.setattr(harness.study.sweep, "connect", stop)
    monkeypatch.setattr(harness.study.sweep, "USER_SNAPSHOT_S", None)
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")  # an earlier study's, in this process
    with pytest.raises(HarnessError):
        harness.study.sweep.run_sweep(small_spec(**{"search.num_samples": str(samples)}), storage=str(tmp_path))
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == period


def test_the_done_line_names_the_trial_the_report_selects():
    from harness.study.sweep import selected_line
    from reports.summary import selected_trials

    rows = [{"trial_id": "s0-b", "seed": 0, "status": "completed", "val_acc": 0.9, "test_acc": 0.8},
            {"trial_id": "s0-a", "seed": 0, "status": "completed", "val_acc": 0.9, "test_acc": 0.7},  # tie: a first
            {"trial_id": "s0-c", "seed": 0, "status": "stopped", "val_acc": 0.95, "test_acc": float("nan")},
            {"trial_id": "s1-a", "seed": 1, "status": "completed", "val_acc": 0.5, "test_acc": 0.6}]
    chosen = selected_trials(pd.DataFrame(rows).assign(study="x"))
    assert chosen.trial_id.tolist() == ["s0-a", "s1-a"]
    assert selected_line(rows) == ("selected (best on validation): s0-a val_acc 0.9000, test_acc 0.7000; "
                                           "s1-a val_acc 0.5000, test_acc 0.6000")
    assert selected_line(rows[2:3]) == "no trial completed its budget, so none is selected"
    over = [{**rows[1], "feasible": False}, rows[2]]  # completed, then measured over its study's limits
    assert selected_line(over) == "1 trial(s) completed their budget, none within the limits, so none is selected"
    many = [{**rows[0], "seed": s, "test_acc": 0.5 + s / 10} for s in range(4)]
    assert selected_line(many) == \
        "selected (best on validation) per seed: test_acc 0.6500 ± 0.1291 over 4 seeds"


def test_a_teacher_whose_training_fails_on_the_cluster_is_one_line(ray_session, tmp_path, capsys):
    from harness.cli.main import main

    # 11 training images in batches of 10: the last batch holds one image, and ResNet-18's last
    # BatchNorm (1x1 maps at 28x28) cannot train on one value per channel; evaluation can.
    spec = tmp_path / "teacher-fails.yaml"
    spec.write_text(
        "study: teacher-fails\nmethod: kd\ndataset: {name: digits, val_fraction: 0.9923}\n"
        "teacher: {model: 'torchvision:resnet18', features: avgpool, recipe: {epochs: 1, batch_size: 10}}\n"
        "student: {model: lenet5_half}\nbudget: {epochs: 2}\nasha: {grace_period: 2}\n"
        "search: {searcher: random, num_samples: 1, space: {lr: 0.01}}\n")
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "studies")]) == 2
    err = capsys.readouterr().err
    assert err == ("error: teacher torchvision:resnet18: its training failed (ValueError: Expected more than 1 value "
                   "per channel when training, got input size torch.Size([1, 512, 1, 1])); nothing was cached and "
                   "no trial ran\n")
    assert not list((tmp_path / "studies").rglob("*.pt")) and not list((tmp_path / "studies").rglob("*.parquet"))


def test_with_several_objectives_a_stopped_trial_is_pruned_and_only_finished_ones_shape_the_front():
    spec = small_spec(**{"budget.epochs": "4",
                         "search.objectives": "[{metric: val_acc, mode: max}, {metric: latency_ms, mode: min}]"})
    assert spec.sampler == "nsga2"
    searcher = make_searcher(spec, seed=0)
    searcher.set_search_properties(None, None, {})
    for trial_id, last_epoch, acc, latency in (("stopped", 2, 0.9, 0.1), ("finished", 4, 0.5, 2.0),
                                               ("slower", 4, 0.4, 3.0)):
        searcher.suggest(trial_id)
        for epoch in range(1, last_epoch):
            searcher.on_trial_result(trial_id, {"val_acc": acc, "latency_ms": float("nan"),
                                                "training_iteration": epoch})
        searcher.on_trial_complete(trial_id, {"val_acc": acc, "latency_ms": latency, "training_iteration": last_epoch})
    trials = searcher.optuna_study.trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].values is None  # NSGA-II gets nothing from a half-trained trial
    assert [t.values for t in trials[1:]] == [[0.5, 2.0], [0.4, 3.0]]
    assert [t.number for t in searcher.optuna_study.best_trials] == [1]  # the stopped trial's 0.9 is no front
