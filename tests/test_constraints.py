"""Limits inside the search (``search.constraints``) and a searched student width: draws over a
limit never train, Optuna is told how far over they were, selection and the leaderboard keep
to the limits, and a limit that cannot be met is one line before any training."""
from __future__ import annotations

import html
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from harness.cli.main import main
from harness.errors import SpecError
from harness.study.constraints import Limit, handed_limits, judge
from methods.c2s2 import C2S2, C2S2Params
from methods.filter_pruning_kd import FilterPruneParams, FilterPruningKD
from tests.support.specs import small_spec

WIDTH = {"student.width": "{uniform: [0.25, 1.0]}"}
PARAMS_LIMIT = "[{metric: params, max_x_teacher: 0.4}]"


@pytest.mark.parametrize("changes, message", [
    ({"search.constraints": "[{metric: flops, max: 1}]"}, r"constraints\[0\].metric: unknown metric 'flops'"),
    ({"search.constraints": "[{metric: params, max: 0}]"}, r"constraints\[0\].max: a limit must be above 0, got 0"),
    ({"search.constraints": "[{metric: params, max_x_teacher: -0.5}]"}, r"max_x_teacher: a limit must be above 0"),
    ({"search.constraints": "[{metric: params}]"}, r"constraints\[0\]: give one bound, max .* or max_x_teacher"),
    ({"search.constraints": "[{metric: latency, max: 1, max_x_teacher: 0.5}]"}, r"give one bound"),
    ({"search.constraints": "[{metric: latency, batch: 7, max: 1}]"}, r"batch 1 and measure.batch_size \(64\)"),
    ({"search.constraints": "[{metric: latency, target: edge, max: 1}]"}, r"no deployment target 'edge'"),
    ({"search.constraints": "[{metric: params, max: 9, batch: 1}]"}, r"target and batch are a latency's"),
    ({"search.constraints": "[{metric: macs, max: 9}, {metric: macs, max: 8}]"}, r"a second limit on macs"),
    ({"method": "scratch", "teacher": "null", "search.constraints": "[{metric: params, max_x_teacher: 0.5}]"},
     r"'scratch' has no teacher to be relative to; give an absolute limit"),
    ({"student.width": "{uniform: [0, 1.0]}"}, r"student.width: every width must be"),
    ({"student.width": "{uniform: [0.5, 1.0]}",
      "search.space": "{lr: 0.01, student.width: {uniform: [0.5, 1.0]}}"}, r"searched twice"),
    ({"method": "c2s2", "student.model": "lenet5_half", "student.width": "{uniform: [0.5, 1.0]}"},
     r"'c2s2' prunes the teacher's own network, so the student's width is the teacher's"),
])
def test_a_bad_limit_or_searched_width_is_one_line(changes, message):
    with pytest.raises(SpecError, match=message):
        small_spec(**changes)


def test_a_limit_no_network_can_meet_stops_check_before_any_training(tmp_path, capsys):
    spec = tmp_path / "tight.yaml"
    spec.write_text("study: tight\nmethod: kd\nteacher: {model: lenet5_half}\n"
                    "student: {model: lenet5_half, width: {uniform: [0.5, 1.0]}}\n"
                    "search: {num_samples: 2, constraints: [{metric: params, max: 500}], space: {lr: 0.01}}\n")
    assert main(["check", str(spec), "--storage", str(tmp_path / "studies")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: search.constraints: 'params <= 500' cannot be met: the student at its smallest width "
                   "(0.5) has params 4,157, 8.31x the limit, on this machine; loosen the limit or make the "
                   "student smaller"]
    assert not (tmp_path / "studies" / "teachers").exists()


def test_pruning_methods_aim_their_targets_at_the_limits():
    # C2S2's target is at most the limit on what it counts; a limit only on the other cost switches it.
    assert C2S2.within(C2S2Params(target_ratio=0.5), {"macs": 0.3}).target_ratio == 0.3
    assert C2S2.within(C2S2Params(target_ratio=0.2), {"macs": 0.3}).target_ratio == 0.2
    switched = C2S2.within(C2S2Params(target_metric="macs", target_ratio=0.5), {"size_bytes": 0.4})
    assert (switched.target_metric, switched.target_ratio) == ("params", 0.4)
    # L1 pruning removes at least the share of filters whose square brings a layer within the limit.
    assert FilterPruningKD.within(FilterPruneParams(ratio=0.1), {"params": 0.25}).ratio == pytest.approx(0.5)
    assert FilterPruningKD.within(FilterPruneParams(ratio=0.7), {"params": 0.25}).ratio == 0.7
    # The harness hands limits as fractions of the network the trial starts from.
    limits = [Limit("params", "params", "", None, 0.5, None, None), Limit("macs", "macs", "", 1000.0, None, None, None)]
    assert handed_limits(limits, {"params": 200, "macs": 4000}, {"params": 200}) == {"params": 0.5, "macs": 0.25}


def test_judge_says_how_far_over_each_limit_and_waits_for_unmeasured_figures():
    latency = Limit("latency", "latency_ms", "", None, 0.5, None, 64)
    params = Limit("params", "params", "", 100.0, None, None, None)
    assert judge([latency, params], {"latency_ms": 1.0, "teacher_latency_ms": 4.0, "params": 150}, {}) == \
        {"excess@latency_ms": -0.5, "excess@params": 0.5, "feasible": False}
    waiting = judge([latency, params], {"latency_ms": float("nan"), "params": 50}, {})
    assert waiting["feasible"] is None and waiting["excess@params"] == -0.5


@pytest.fixture(scope="module")
def limited(ray_session, tmp_path_factory, teacher_cache) -> Path:
    """A KD study searching the student's width under a parameter limit: 0.4x the teacher's."""
    from harness.study.sweep import run_sweep

    storage = tmp_path_factory.mktemp("studies")
    (storage / "teachers").symlink_to(teacher_cache, target_is_directory=True)
    run_sweep(small_spec(**{"study": "limited", **WIDTH, "search.constraints": PARAMS_LIMIT,
                            "search.num_samples": "6", "measure.rounds": "1", "asha.grace_period": "2"}),
              storage=str(storage))
    return storage


def test_draws_over_the_limit_never_train_and_optuna_learns_why(limited):
    folder = limited / "limited"
    trials = pd.read_parquet(folder / "trials.parquet")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    over = trials[trials["status"].eq("infeasible")]
    ran = trials[~trials["status"].eq("infeasible")]
    assert len(ran) == 6 and len(over) >= 1
    assert not epochs["trial_id"].isin(over["trial_id"]).any() and (over["epochs_done"] == 0).all()
    assert (over["feasible"].eq(False) & over["excess@params"].gt(0)).all()
    assert (over["params"] > 0.4 * over["teacher_params"]).all()
    completed = trials[trials["status"].eq("completed")]
    assert len(completed) and completed["feasible"].eq(True).all() and completed["excess@params"].le(0).all()
    assert (completed["params"] <= 0.4 * completed["teacher_params"]).all()
    # Each trial built its own width: narrower draws, fewer parameters.
    assert completed.sort_values("param_student.width")["params"].is_monotonic_increasing
    # Optuna holds every draw with its excess: the infeasible ones as pruned, over the limit.
    from harness.store.journal import open_storage

    study = optuna.load_study(study_name="limited.seed0", storage=open_storage(None, folder))
    told = [t for t in study.trials if "params" in t.constraints]
    assert len(told) == len(trials)
    assert sorted(t.constraints["params"] > 0 for t in told) == sorted(trials["feasible"].eq(False))


def test_selection_and_the_leaderboard_keep_to_the_studys_limits(limited):
    assert main(["leaderboard", str(limited), "--no-remeasure"]) == 0
    board = pd.read_parquet(limited / "leaderboard.parquet").set_index("study")
    trials = pd.read_parquet(limited / "limited" / "trials.parquet")
    chosen = trials[trials["status"].eq("completed")].sort_values(["val_acc", "trial_id"],
                                                                  ascending=[False, True]).iloc[0]
    assert board.loc["limited", "limits"] == "params <= 0.4x teacher"
    assert board.loc["limited", "acc_within_limits"] == pytest.approx(chosen["test_acc"])
    assert "| params <= 0.4x teacher |" in (limited / "leaderboard.md").read_text()
    # The study's report says it was searched within its limits, and how many draws never trained.
    page = limited / "limited-report.html"
    assert main(["report", str(limited / "limited"), "-o", str(page), "--no-images"]) == 0
    untrained = int(trials["status"].eq("infeasible").sum())
    said = f"within params <= 0.4x teacher (the selected trial is the best within them; {untrained} draw(s) over"
    assert html.escape(said) in page.read_text()


@pytest.mark.slow
def test_the_shipped_latency_limited_study_selects_within_its_limit(ray_session, teacher_cache, tmp_path, monkeypatch,
                                                                   capsys):
    """search_spaces/examples/kd_within_latency.yaml as shipped: width searched, latency at most half
    the teacher's; every selected trial within it, the draws over it untrained, the leaderboard's
    figure under the limit the study's own selection."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "teachers").symlink_to(teacher_cache, target_is_directory=True)
    shipped = Path(__file__).resolve().parents[1] / "search_spaces" / "examples" / "kd_within_latency.yaml"
    assert main(["sweep", str(shipped), "--storage", "studies"]) == 0
    folder = tmp_path / "studies" / "kd-within-latency"
    trials = pd.read_parquet(folder / "trials.parquet")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    over = trials[trials["status"].eq("infeasible")]
    assert len(over) and not epochs["trial_id"].isin(over["trial_id"]).any()
    assert (over["draw_latency_ms"] > 0.5 * over["draw_teacher_latency_ms"]).all()
    # ASHA lets the first trial at each rung on, so one trial at least completes its budget. Its
    # verdict is its latency measured again at the study's end: TPE learns that wider is better,
    # so the trials it completes sit near the limit, and that measurement can land either side.
    completed = trials[trials["status"].eq("completed")]
    assert len(completed) and completed["feasible"].isin([True, False]).all()
    within = completed[completed["feasible"].eq(True)]
    assert (within["latency_ms"] <= 0.5 * within["teacher_latency_ms"]).all()
    outside = completed[completed["feasible"].eq(False)]
    assert (outside["latency_ms"] > 0.5 * outside["teacher_latency_ms"]).all()
    assert main(["leaderboard", "studies", "--no-remeasure"]) == 0
    board = pd.read_parquet(tmp_path / "studies" / "leaderboard.parquet").set_index("study")
    assert board.loc["kd-within-latency", "limits"] == "latency (batch 64) <= 0.5x teacher"
    if within.empty:  # a trial over the limit is never selected, however accurate
        assert pd.isna(board.loc["kd-within-latency", "acc_within_limits"])
        assert "none within the limits, so none is selected" in capsys.readouterr().out
    else:
        chosen = within.sort_values(["val_acc", "trial_id"], ascending=[False, True]).iloc[0]
        assert board.loc["kd-within-latency", "acc_within_limits"] == pytest.approx(chosen["test_acc"])


def test_a_search_that_draws_only_over_its_limits_tells_optuna_each_and_ends(monkeypatch):
    """No Ray: the searcher alone, its limit below every width it may draw."""
    from harness.data.datasets import load_dataset
    from harness.study import search
    from harness.study.constraints import DrawGate

    monkeypatch.setattr(search, "MAX_REDRAWS", 5)
    spec = small_spec(**WIDTH, **{"search.constraints": "[{metric: params, max: 1000}]"})
    data = load_dataset(spec.dataset)

    class Rows:
        def __init__(self):
            self.rows, self.ended = [], False

        def record_infeasible(self, number, config, verdict):
            self.rows.append((number, config["student.width"], verdict.judged["excess@params"]))

        def search_gave_up(self):
            self.ended = True

    rows = Rows()
    gate = DrawGate(spec, data.num_classes, data.input_shape, data.mean, data.std)
    searcher = search.make_searcher(spec, 0, gate=gate, record=rows)
    assert searcher.suggest("trial-1") == search.Searcher.FINISHED and rows.ended
    assert [number for number, _, _ in rows.rows] == [0, 1, 2, 3, 4]
    assert all(excess > 0 for _, _, excess in rows.rows)
    told = searcher.optuna_study.trials
    assert [t.state.name for t in told] == ["PRUNED"] * 5
    assert [t.constraints["params"] for t in told] == [excess for _, _, excess in rows.rows]
    assert len(gate.measured) <= 5  # one measurement per distinct network


@pytest.mark.slow
def test_a_pruning_study_aims_at_its_size_limit_and_is_judged_once_pruned(ray_session, studies):
    """C2S2 drawn at a 0.9 MAC target under a limit of 0.6x the teacher's parameters: it prunes
    towards the parameters instead, and its network is judged after pruning."""
    from harness.study.sweep import run_sweep

    spec = small_spec(**{"study": "c2s2-limited", "method": "c2s2", "student.width": "1.0", "budget.epochs": "3",
                         "asha.grace_period": "3", "search.num_samples": "2", "measure.rounds": "0",
                         "search.constraints": "[{metric: params, max_x_teacher: 0.6}]",
                         "search.space": "{lr: {loguniform: [0.01, 0.02]}, target_ratio: 0.9, reg: 0.5, "
                                         "max_damage: 0.05, batch_size: 32}"})
    folder = run_sweep(spec, storage=str(studies))
    trials = pd.read_parquet(folder / "trials.parquet")
    assert not trials["status"].eq("infeasible").any()  # a pruning method's draws all train
    done = trials[trials["status"].eq("completed")]
    assert len(done) == 2
    assert all(json.loads(aimed) == {"target_metric": "params", "target_ratio": 0.6} for aimed in done["aimed"])
    assert (done["params"] < 0.9 * done["teacher_params"]).all()  # pruned past the drawn target's share
    assert (done["feasible"] == (done["params"] <= 0.6 * done["teacher_params"])).all()
