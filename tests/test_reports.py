"""Reports and leaderboards from study folders (no torch or Ray involved)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from reports.leaderboard import build_leaderboard, p_vs_leader
from reports.load import ReportError, load_study
from reports.pareto import pareto_mask
from reports.study_report import build_report
from reports.summary import selected_trials
from tests.fake_studies import STATUSES, write_study


def brute_force_front(frame: pd.DataFrame, objectives: dict[str, str]) -> list[bool]:
    """The definition, one pair of rows at a time."""
    signs = {c: (-1 if mode == "max" else 1) for c, mode in objectives.items()}
    rows = [{c: r[c] * signs[c] for c in objectives} for r in frame.to_dict("records")]
    out = []
    for a in rows:
        if any(np.isnan(v) for v in a.values()):
            out.append(False)
            continue
        dominated = any(all(b[c] <= a[c] for c in a) and any(b[c] < a[c] for c in a)
                        for b in rows if not any(np.isnan(v) for v in b.values()))
        out.append(not dominated)
    return out


def test_pareto_mask_matches_the_definition_with_ties_and_missing_values():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"acc": rng.integers(0, 8, 300) / 8, "lat": rng.integers(1, 9, 300).astype(float),
                          "size": rng.integers(1, 5, 300).astype(float)})
    frame.loc[[3, 40, 77], "lat"] = np.nan
    for objectives in ({"acc": "max", "lat": "min"}, {"acc": "max", "lat": "min", "size": "min"}):
        assert pareto_mask(frame, objectives).tolist() == brute_force_front(frame, objectives)
    assert not pareto_mask(frame, {"acc": "max", "lat": "min"})[[3, 40, 77]].any()


@pytest.fixture
def storage(tmp_path):
    """Messy real-looking results: three methods, errors, stops, a running study, a one-trial study."""
    rng = np.random.default_rng(0)
    write_study(tmp_path, "kd-digits", "kd", 10, seeds=(0, 1, 2), statuses=STATUSES[:2] + ("completed",), rng=rng)
    write_study(tmp_path, "scratch-digits", "scratch", 6, seeds=(0, 1), teacher=None, rng=rng)
    write_study(tmp_path, "c2s2-digits", "c2s2", 8, student="lenet5", statuses=STATUSES, rng=rng, finished=False)
    write_study(tmp_path, "dafl-digits", "dafl", 1, rng=rng)
    kd = tmp_path / "kd-digits" / "trials.parquet"
    trials = pd.read_parquet(kd)
    trials.loc[0, ["latency_ms", "test_acc"]] = np.nan  # a completed trial whose measurement failed
    trials.to_parquet(kd, index=False)
    return tmp_path


def test_selected_trial_per_seed_is_the_best_on_validation_never_on_test(storage):
    trials = load_study(storage / "kd-digits").trials
    chosen = selected_trials(trials)
    assert sorted(chosen["seed"]) == [0, 1, 2]
    for row in chosen.to_dict("records"):
        seed_done = trials[(trials.seed == row["seed"]) & (trials.status == "completed")]
        assert row["val_acc"] == seed_done["val_acc"].max()


def test_leaderboard_ranks_every_study_and_its_pareto_flags_match_brute_force(storage):
    board, paths = build_leaderboard(storage)
    assert all(p.is_file() for p in paths)
    table = pd.read_parquet(storage / "leaderboard.parquet")
    assert set(table.study) == {"kd-digits", "scratch-digits", "c2s2-digits", "dafl-digits"}
    c2s2 = table.set_index("study").loc["c2s2-digits"]
    assert c2s2["error"] == 2 and c2s2["running"] == 2 and c2s2["stopped"] == 2  # labelled, not dropped
    kd = table.set_index("study").loc["kd-digits"]
    assert kd["seeds"] == 3 and kd["test_acc_std"] > 0
    assert kd["gap_to_teacher"] == pytest.approx(kd["test_acc_mean"] - 0.99)
    scratch_mean = table.set_index("study").loc["scratch-digits", "test_acc_mean"]
    assert kd["gap_to_scratch"] == pytest.approx(kd["test_acc_mean"] - scratch_mean)
    trials = pd.read_parquet(storage / "leaderboard_trials.parquet")
    assert len(trials) == 30 + 12 + 8 + 1
    has_figures = trials[["val_acc", "latency_ms", "size_bytes"]].notna().all(axis=1)
    measured = trials[(trials.status == "completed") & has_figures]
    expected = brute_force_front(measured, {"val_acc": "max", "latency_ms": "min", "size_bytes": "min"})
    assert measured["pareto"].tolist() == expected and any(expected)
    assert not trials.loc[~trials.index.isin(measured.index), "pareto"].any()
    on_front = trials[trials.pareto].groupby("study").size()
    assert table.set_index("study")["pareto_trials"].to_dict() == {s: int(on_front.get(s, 0)) for s in table.study}
    assert table.loc[table["rank"] == 1, "p_vs_leader"].isna().all()
    markdown = (storage / "leaderboard.md").read_text()
    assert "| 1 |" in markdown and "kd-digits" in markdown and "p_vs_leader" in markdown


def test_p_vs_leader_is_welchs_test_on_the_seeds_and_says_nothing_below_two_seeds():
    from scipy.stats import ttest_ind

    seeds = {"a": [0.990, 0.991, 0.989], "b": [0.989, 0.991, 0.990, 0.988], "c": [0.95, 0.96, 0.94],
             "d": [0.97], "e": [0.98, 0.98]}
    table = pd.DataFrame([{"dataset": "mnist", "pair": "lenet5->lenet5_half", "study": name,
                           "test_acc_mean": np.mean(v), "test_acc_std": np.std(v, ddof=1) if len(v) > 1 else np.nan,
                           "seeds": len(v)} for name, v in seeds.items()])
    table["rank"] = range(1, len(table) + 1)
    p = dict(zip(table.study, p_vs_leader(table), strict=True))
    assert np.isnan(p["a"]) and np.isnan(p["d"])  # the leader; a single seed
    for name in ("b", "c"):
        assert p[name] == pytest.approx(ttest_ind(seeds[name], seeds["a"], equal_var=False).pvalue)
    assert p["b"] > 0.5 and p["c"] < 0.05  # within the seeds' spread; far outside it
    assert p["e"] < 0.05  # no spread of its own, still tested against the leader's
    table.loc[table.study == "a", "test_acc_std"] = 0.0
    table.loc[table.study == "a", "test_acc_mean"] = 0.98
    assert p_vs_leader(table)[4] == 1.0  # both without spread, equal means: a tie, not NaN
    other = table.iloc[[2, 1]].assign(pair="lenet5->lenet5", rank=[1, 2])  # c leads this pair, b follows
    both = p_vs_leader(pd.concat([table, other], ignore_index=True))
    assert np.isnan(both[5])  # each pair has its own leader, and is tested against it
    assert both[6] == pytest.approx(ttest_ind(seeds["b"], seeds["c"], equal_var=False).pvalue)


def test_leaderboard_tests_each_study_against_its_pairs_leader_on_the_selected_trials(tmp_path):
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(3)
    for study, method in (("kd-digits", "kd"), ("kdgan-digits", "kdgan"), ("dafl-digits", "dafl")):
        write_study(tmp_path, study, method, 5, seeds=(0, 1, 2), rng=rng)
    board, _ = build_leaderboard(tmp_path)
    table = board.table.set_index("study")
    leader = table.index[table["rank"] == 1][0]
    chosen = selected_trials(board.trials).groupby("study")["test_acc"].apply(list)
    for study in table.index.drop(leader):
        expected = ttest_ind(chosen[study], chosen[leader], equal_var=False).pvalue
        assert table.loc[study, "p_vs_leader"] == pytest.approx(expected)
    assert "p_vs_leader" in (tmp_path / "leaderboard.md").read_text()


def test_leaderboard_reads_only_new_or_changed_studies(storage):
    first, _ = build_leaderboard(storage)
    assert (first.read, first.cached) == (4, 0)
    write_study(storage, "kdgan-digits", "kdgan", 4)
    second, _ = build_leaderboard(storage)
    assert (second.read, second.cached) == (1, 4)
    assert "kdgan-digits" in set(pd.read_parquet(storage / "leaderboard.parquet").study)


def test_a_leaderboard_of_studies_that_selected_no_trial_lists_them_without_figures(tmp_path):
    """A study whose completed trials all measured over its limits selects none (nor does one
    whose trials all stopped): the leaderboard lists it with its counts, its figures missing."""
    write_study(tmp_path, "over", "kd", 4)
    write_study(tmp_path, "stopped", "kd", 3, statuses=("stopped",))
    over = tmp_path / "over" / "trials.parquet"
    pd.read_parquet(over).assign(feasible=False, limits="latency (batch 64) <= 0.5x teacher").to_parquet(over)
    board, _ = build_leaderboard(tmp_path)
    table = board.table.set_index("study")
    assert table.loc["over", "completed"] == 4 and table.loc["stopped", "stopped"] == 3
    assert table[["test_acc_mean", "latency_ms", "size_bytes", "acc_within_limits"]].isna().all().all()


def test_budgets_keep_only_trials_within_a_fraction_of_the_teacher(storage):
    board, _ = build_leaderboard(storage, budgets=(0.5,))
    trials = board.trials
    kd = trials[(trials.study == "kd-digits")]
    within = kd[kd.latency_ms <= 0.5 * kd.teacher_latency_ms]
    expected = selected_trials(within).test_acc.mean()
    row = board.table.set_index("study").loc["kd-digits"]
    assert row["acc_latency_le_0.5x_teacher"] == pytest.approx(expected)


def test_a_report_copes_with_messy_studies_and_labels_what_it_cannot_place(storage, tmp_path):
    folders = [storage / s for s in ("kd-digits", "scratch-digits", "c2s2-digits", "dafl-digits")]
    path, notes = build_report(folders, tmp_path / "out" / "report.html", images=False)
    text = path.read_text()
    assert text.count("Plotly.newPlot") >= 8 and text.count("plotly.js v") == 1  # the library embedded once
    assert "c2s2-digits: interrupted (its driver, pid" in text and "RuntimeError: boom" in text
    assert any(n.startswith("c2s2-digits: interrupted") and "--resume" in n for n in notes)
    assert any("2 error" in n and "2 running" in n and "stopped" in n for n in notes)
    assert "scratch lenet5_half" in text and "teacher lenet5 99.00%" in text  # reference lines


def test_an_unfinished_study_is_running_while_its_driver_lives_and_interrupted_after(tmp_path):
    import os
    import socket

    here = socket.gethostname()
    write_study(tmp_path, "live", "kd", 2, finished=False, driver={"host": here, "pid": os.getpid()})
    write_study(tmp_path, "dead", "kd", 2, finished=False)  # a pid no process has
    write_study(tmp_path, "elsewhere", "kd", 2, finished=False, driver={"host": "node-7", "pid": os.getpid()})
    write_study(tmp_path, "done", "kd", 2)
    states = {name: load_study(tmp_path / name).state for name in ("live", "dead", "elsewhere", "done")}
    assert states == {"live": "running", "dead": "interrupted", "elsewhere": "running or interrupted",
                      "done": "finished"}
    assert [load_study(tmp_path / name).running for name in states] == [True, True, True, False]
    build_leaderboard(tmp_path)
    table = pd.read_parquet(tmp_path / "leaderboard.parquet").set_index("study")
    assert table["state"].to_dict() == states
    assert "| interrupted |" in (tmp_path / "leaderboard.md").read_text()


def test_report_and_leaderboard_errors_are_one_line_and_exit_2(tmp_path):
    for argv in (["report", str(tmp_path / "missing")], ["leaderboard", str(tmp_path / "missing")],
                 ["leaderboard", str(tmp_path)]):
        result = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    with pytest.raises(ReportError, match="study.json"):
        load_study(tmp_path)


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_report_renders_in_headless_chromium_without_javascript_errors(storage, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    path, _ = build_report([storage / "kd-digits", storage / "c2s2-digits"], tmp_path / "report.html", images=False)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
             "--virtual-time-budget=20000", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-js-errors="0"' in dom, dom[-2000:]
    charts = int(dom.split('data-charts-rendered="')[1].split('"')[0])
    assert charts == path.read_text().count("Plotly.newPlot")  # every chart drew its SVG
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1300,4000", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a blank page is a few kB


def _long_named_study(storage):
    write_study(storage, "hint-kd-digits-with-a-long-study-name",
                "my_method.hint_kd_with_feature_hints:HintKnowledgeDistillation", 4, rng=np.random.default_rng(3))


def test_the_leaderboard_shows_the_essential_columns_and_keeps_the_rest_behind_an_expander(storage):
    _long_named_study(storage)
    build_leaderboard(storage)
    page = (storage / "leaderboard.html").read_text()
    boards = page.split("<table class='board'>")[1:]
    assert len(boards) == 3  # one per (data set, pair)
    for board in boards:
        head = board.split("</thead>")[0]
        assert [h.split(">")[-1] for h in head.split("</th>")[:-1]] == \
            ["rank", "method", "study", "test accuracy", "p", "latency × teacher", "size × teacher"]
        assert board.split("</table>")[1].lstrip().startswith("<details><summary>every column")
    assert "95.36% ± 0.52% (3 seeds)" in page and "c2s2-digits (interrupted)" in page
    table = pd.read_parquet(storage / "leaderboard.parquet")
    assert {"latency_x_teacher", "size_x_teacher", "latency_rank", "latency_vs_leader", "device"} <= set(table)


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_leaderboard_fits_a_1400_pixel_window(storage, tmp_path):
    _long_named_study(storage)
    build_leaderboard(storage)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
             "--virtual-time-budget=20000", "--hide-scrollbars"]
    for width in (1400, 900):  # 900: narrower still, where the names wrap
        dom = subprocess.run([*flags, f"--window-size={width},900", "--dump-dom",
                              (storage / "leaderboard.html").as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        assert 'data-js-errors="0"' in dom, dom[-2000:]
        scroll = int(dom.split('data-scroll-width="')[1].split('"')[0])
        client = int(dom.split('data-client-width="')[1].split('"')[0])
        assert client == width and scroll <= client, (width, scroll)


def test_reports_import_neither_torch_nor_ray():
    code = ("import sys, reports.study_report, reports.leaderboard; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hover_names_the_trial_its_knobs_and_its_latency_interval():
    from reports.figures import hover_text

    row = {"trial_id": "s0-a", "study": "kd", "method": "kd", "test_acc": 0.9, "val_acc": 0.9, "param_lr": 0.0123456,
           "latency_ms": 2.5, "size_bytes": 1000.0, "params": 10, "status": "completed", "epochs_done": 3}
    again = pd.DataFrame([{**row, "latency_rounds": 5.0, "latency_low_ms": 2.25, "latency_high_ms": 2.75,
                           "latency_trials": 4.0, "latency_noisy": False}])
    text = hover_text(again)[0]
    assert "<b>s0-a</b>" in text and "lr=0.01235" in text
    assert "latency 2.5 ms [2.25–2.75] (5 rounds, one figure for 4 trials of this network)" in text
    noisy = hover_text(again.assign(latency_noisy=True))[0]
    assert "NOISY" in noisy and "NOISY" not in text
    in_trial = hover_text(pd.DataFrame([row]))[0]
    assert "latency 2.5 ms (in the trial)" in in_trial and "[" not in in_trial


def test_the_protocol_says_where_the_latencies_come_from():
    from reports.study_report import latency_protocol

    trials = pd.DataFrame({"latency_rounds": [5.0, 5.0, np.nan], "latency_spread": [0.1, 0.3, np.nan],
                           "network": ["a", "a", "a"], "latency_noisy": [False, True, None]})
    assert latency_protocol(trials) == ("latency of 2 completed trial(s), 1 distinct network(s), measured again "
                                        "after the search in one window, 5 interleaved round(s) (median interval "
                                        "width 20%), 1 flagged noisy")
    assert "at the end of each trial" in latency_protocol(pd.DataFrame({"latency_ms": [1.0]}))


def test_accuracy_ranks_are_shared_where_the_seeds_cannot_tell_studies_apart():
    from reports.leaderboard import accuracy_rank, shown_rank

    rows = [  # (dataset, pair, study, mean, std, seeds), in the table's order: mean descending per group
        ("digits", "lenet5->half", "sure", 0.990, 0.001, 3),
        ("digits", "lenet5->half", "noisy", 0.985, 0.010, 3),  # p > 0.05 against "sure": shares rank 1
        ("digits", "lenet5->half", "worse", 0.900, 0.001, 3),  # both measurably better: rank 3
        ("digits", "lenet5->half", "unfinished", np.nan, np.nan, 0),
        ("mnist", "lenet5->half", "one-a", 0.98, np.nan, 1),
        ("mnist", "lenet5->half", "one-b", 0.98, np.nan, 1),  # an exact tie with one seed each
        ("mnist", "lenet5->half", "one-c", 0.97, np.nan, 1),
    ]
    table = pd.DataFrame(rows, columns=["dataset", "pair", "study", "test_acc_mean", "test_acc_std", "seeds"])
    table["rank"] = accuracy_rank(table)
    assert dict(zip(table.study, table["rank"], strict=True)) == {
        "sure": 1, "noisy": 1, "worse": 3, "unfinished": 4, "one-a": 1, "one-b": 1, "one-c": 3}
    table["rank_shared"] = table.groupby(["dataset", "pair", "rank"])["rank"].transform("size") > 1
    assert [shown_rank(r) for r in table.to_dict("records")] == ["=1", "=1", "3", "4", "=1", "=1", "3"]


def test_a_chart_puts_the_teacher_at_1x_and_folds_trials_of_one_network_into_one_point():
    from reports import figures

    trials = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"], "study": "s", "method": "kd", "dataset": "digits", "status": "completed",
        "epochs_done": 20, "network": ["n1", "n1", "n1", "n2"], "val_acc": [0.97, 0.98, 0.96, 0.90],
        "test_acc": [0.970, 0.975, 0.960, 0.91], "latency_ms": [0.5, 0.5, 0.5, 0.4], "latency_low_ms": 0.45,
        "latency_high_ms": 0.55, "size_bytes": [1e4, 1e4, 1e4, 8e3], "teacher_latency_ms": 2.0,
        "teacher_size_bytes": 4e4, "teacher_test_acc": 0.99, "pareto_latency": [False, True, False, True]})
    fig = figures.pareto_chart(trials, "latency_ms", "pareto_latency", [])
    points, _, teacher = fig.data
    assert sorted(points.x) == [0.2, 0.25]  # multiples of the teacher's 2 ms; n1's three trials are one point
    folded = list(points.x).index(0.25)
    assert points.y[folded] == pytest.approx((0.970 + 0.975 + 0.960) / 3)
    assert points.error_y.array[folded] == pytest.approx(0.975 - points.y[folded])  # the range of the three
    assert points.marker.symbol[folded] == "diamond"  # one of them is on the front
    assert (teacher.name, tuple(teacher.x), tuple(teacher.y)) == ("teacher", (1.0,), (0.99,))
    assert "x the teacher's" in fig.layout.xaxis.title.text


def test_the_leaderboard_orders_and_ranks_each_pair_as_computed_by_hand(tmp_path):
    """Per (data set, pair): by mean test accuracy of the selected trials, a gap the seeds
    cannot tell apart shares the rank, a study without a finished trial comes last, and
    studies of another data set are ranked apart."""
    figures = {  # study -> (dataset, per-seed test accuracy of its selected trials)
        "top": ("digits", [0.970, 0.971, 0.969]), "tied": ("digits", [0.969, 0.972, 0.968]),
        "low": ("digits", [0.900, 0.901, 0.899]), "m1": ("mnist", [0.990, 0.991, 0.989]),
        "m2": ("mnist", [0.980, 0.981, 0.979])}
    for study, (dataset, accs) in figures.items():
        folder = write_study(tmp_path, study, "kd", 2, seeds=(0, 1, 2), dataset=dataset)
        trials = pd.read_parquet(folder / "trials.parquet")
        for seed, acc in enumerate(accs):  # the seed's best on validation holds `acc`, the other less
            rows = trials.index[trials.seed == seed]
            trials.loc[rows, "val_acc"] = [0.99, 0.5]
            trials.loc[rows, "test_acc"] = [acc, 0.5]
        trials.to_parquet(folder / "trials.parquet", index=False)
    write_study(tmp_path, "none", "kd", 2, seeds=(0,), statuses=("stopped",))
    board, _ = build_leaderboard(tmp_path)
    table = board.table
    digits = table[table.dataset == "digits"]
    assert digits.study.tolist() == ["top", "tied", "low", "none"]
    assert digits["rank"].tolist() == [1, 1, 3, 4] and digits["rank_shared"].tolist() == [True, True, False, False]
    mnist = table[table.dataset == "mnist"]
    assert mnist.study.tolist() == ["m1", "m2"] and mnist["rank"].tolist() == [1, 2]
    markdown = (tmp_path / "leaderboard.md").read_text()
    rows = [line.split(" | ")[:3] for line in markdown.splitlines() if line.startswith("| ") and " kd " in line]
    assert [(r[0], r[2]) for r in rows] == [("| =1", "top"), ("| =1", "tied"), ("| 3", "low"), ("| 4", "none"),
                                           ("| 1", "m1"), ("| 2", "m2")]
