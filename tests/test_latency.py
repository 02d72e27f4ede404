"""One network, one latency: fingerprints, windows, intervals and fronts that noise cannot reorder."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from harness.measure.cost import network_fingerprint
from harness.measure.latency import TimedNetwork, measure_window, median_interval
from harness.networks.zoo import create_model
from reports.leaderboard import latency_rank, latency_vs_leader
from reports.pareto import pareto_mask
from reports.summary import one_latency_per_network, window_lines


def test_the_fingerprint_is_the_structure_not_the_weights():
    a, b = create_model("lenet5_half", 10), create_model("lenet5_half", 10)
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    assert network_fingerprint(a) == network_fingerprint(b)
    assert network_fingerprint(create_model("lenet5_half", 10, 0.5)) != network_fingerprint(a)  # narrower
    # Same tensors, different work: a stride is part of what is timed.
    assert network_fingerprint(nn.Conv2d(3, 8, 3)) != network_fingerprint(nn.Conv2d(3, 8, 3, stride=2))
    assert network_fingerprint(nn.Sequential(nn.Linear(4, 4), nn.ReLU())) != \
        network_fingerprint(nn.Sequential(nn.Linear(4, 4), nn.GELU()))


@pytest.mark.parametrize("n, k", [(3, 1), (5, 1), (7, 1), (9, 2), (15, 4)])
def test_the_median_interval_is_the_order_statistics_holding_it_90_percent_of_the_time(n, k):
    assert median_interval(list(range(n, 0, -1))) == (k, n + 1 - k)
    # Its coverage, by simulation: the true median of a skewed distribution falls inside.
    rng = np.random.default_rng(0)
    samples = rng.exponential(size=(4000, n))
    inside = [low <= np.log(2) <= high for low, high in map(median_interval, samples.tolist())]
    promised = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n  # 0.75 for 3 rounds: only the range
    assert promised >= 0.9 or n < 5
    assert np.mean(inside) >= promised - 0.02


def _fake_timer(figures):
    """A timer that plays back figures per network and records the order it was called in."""
    calls = []

    def timer(network):
        calls.append(network.input_shape[0])
        value = next(figures[network.input_shape[0]])
        return {"latency_ms": value, "latency_b1_ms": value / 10}

    return timer, calls


def _network(name):
    return TimedNetwork(nn.Identity(), (name,), 64, 0, 1)


def test_a_window_interleaves_its_rounds_and_measures_noisy_networks_again():
    steady = itertools.cycle([1.0, 1.02, 0.98])
    settles = iter([1.0, 3.0, 1.0, 0.5, 1.0] + [2.0, 2.02, 1.98, 2.0, 2.01])  # noisy once, then steady
    never = iter([1.0, 4.0] * 20)
    timer, calls = _fake_timer({"steady": steady, "settles": settles, "never": never})
    networks = {name: _network(name) for name in ("steady", "settles", "never")}
    figures = measure_window(networks, rounds=5, max_spread=0.25, attempts=3, timer=timer)
    assert calls[:6] == ["steady", "settles", "never"] * 2  # round by round, not network by network
    assert calls[15:19] == ["settles", "never", "settles", "never"]  # the second attempt: only the noisy ones
    assert figures["steady"]["latency_attempts"] == 1 and not figures["steady"]["latency_noisy"]
    assert figures["settles"]["latency_attempts"] == 2 and not figures["settles"]["latency_noisy"]
    assert figures["settles"]["latency_ms"] == 2.0 and figures["settles"]["latency_low_ms"] == 1.98
    assert figures["never"]["latency_attempts"] == 3 and figures["never"]["latency_noisy"]
    assert figures["steady"]["latency_rounds"] == 5 and figures["steady"]["latency_spread"] == pytest.approx(0.04)


def test_a_real_window_tells_a_pruned_network_from_the_full_one():
    torch.set_num_threads(1)
    shape = (1, 28, 28)
    full, pruned = (TimedNetwork(create_model("lenet5", 10, width, shape).eval(), shape, 64, 2, 5)
                    for width in (1.0, 0.25))
    figures = measure_window({"full": full, "pruned": pruned}, rounds=5, max_spread=0.5, attempts=2)
    assert figures["pruned"]["latency_high_ms"] < figures["full"]["latency_low_ms"]


def _brute_force(points, intervals):
    """Row i is dominated when some j is no worse everywhere (intervals overlap or j's is
    better) and better somewhere (its interval wholly better): the definition, row by row."""
    out = []
    for i, a in enumerate(points):
        dominated = False
        for j, b in enumerate(points):
            if i == j:
                continue
            no_worse = b["acc"] >= a["acc"] and intervals[j][0] <= intervals[i][1]
            better = b["acc"] > a["acc"] or intervals[j][1] < intervals[i][0]
            dominated |= no_worse and better
        out.append(not dominated)
    return out


def test_fronts_treat_overlapping_latencies_as_equal_and_apart_ones_as_faster():
    frame = pd.DataFrame({"acc": [0.95, 0.97, 0.90, 0.80], "lat": [2.0, 2.2, 1.0, 0.5],
                          "low": [1.8, 1.9, 0.9, 0.45], "high": [2.3, 2.4, 1.1, 0.55]})
    objectives = {"acc": "max", "lat": "min"}
    # Points: 2.0 ms beats 2.2 ms. Intervals: the two overlap, so the more accurate one wins.
    assert pareto_mask(frame, objectives).tolist() == [True, True, True, True]
    assert pareto_mask(frame, objectives, {"lat": ("low", "high")}).tolist() == [False, True, True, True]
    # 0.5 ms against 1.0 ms is measurably faster; 0.98 ms would not be.
    close = frame.assign(lat=[2.0, 2.2, 1.0, 0.98], low=[1.8, 1.9, 0.9, 0.93], high=[2.3, 2.4, 1.1, 1.03])
    assert pareto_mask(close, objectives, {"lat": ("low", "high")}).tolist() == [False, True, True, False]
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 30
        lat = rng.uniform(1, 3, n)
        width = rng.uniform(0, 0.5, n)
        frame = pd.DataFrame({"acc": rng.choice([0.9, 0.92, 0.94], n), "lat": lat, "low": lat - width,
                              "high": lat + width})
        expected = _brute_force(frame.to_dict("records"), list(zip(frame.low, frame.high, strict=True)))
        assert pareto_mask(frame, objectives, {"lat": ("low", "high")}).tolist() == expected


def _trials(**columns):
    base = {"study": ["kd", "kd", "scratch", "c2s2"], "trial_id": ["s0-a", "s0-b", "s0-c", "s0-d"],
            "dataset": "digits", "device": "cpu", "latency_batch": 64, "status": "completed",
            "val_acc": [0.9, 0.91, 0.92, 0.88], "test_acc": [0.9, 0.91, 0.92, 0.88], "size_bytes": [9e3] * 3 + [4e3],
            "network": ["n1", "n1", "n1", "n2"]}
    return pd.DataFrame({**base, **columns})


def test_one_network_gets_one_latency_pooled_over_the_windows_it_was_measured_in():
    trials = _trials(latency_ms=[2.4, 2.4, 2.2, 1.0], latency_low_ms=[2.3, 2.3, 2.1, 0.9],
                     latency_high_ms=[2.5, 2.5, 2.3, 1.1], latency_window=["w1", "w1", "w2", "w2"],
                     latency_rounds=5)
    shared = one_latency_per_network(trials)
    n1 = shared[shared.network.eq("n1")]
    assert n1.latency_ms.nunique() == 1 and n1.latency_ms.iloc[0] == 2.4
    assert (n1.latency_low_ms == 2.1).all() and (n1.latency_high_ms == 2.5).all() and (n1.latency_trials == 3).all()
    assert shared.latency_ms.iloc[3] == 1.0  # another network keeps its own
    lines = window_lines(shared)
    assert len(lines) == 1 and lines[0][1] and "2 measurement window(s)" in lines[0][0]
    one = window_lines(one_latency_per_network(trials.assign(latency_window="w3")))
    assert one == [("digits on cpu: the latencies of 3 studies' 4 completed trials (2 distinct networks) were "
                    "measured together in one window (w3, 5 interleaved rounds)", False)]
    noisy = window_lines(trials.assign(latency_window="w3", latency_noisy=[False, False, False, True]))
    assert noisy[1] == ("digits on cpu: NOISY latency, rounds still further apart than the bound after every "
                        "attempt, for network(s) n2 (1 trial(s) of c2s2)", True)


def test_latency_ranks_tie_where_intervals_overlap():
    table = pd.DataFrame({"dataset": "digits", "device": "cpu", "pair": ["t->s", "-->s", "t->t"],
                          "rank": [1, 1, 1], "latency_ms": [2.4, 2.2, 1.0],
                          "latency_low_ms": [2.1, 2.1, 0.9], "latency_high_ms": [2.6, 2.6, 1.1]})
    assert latency_rank(table).tolist() == [2, 2, 1]
    same_pair = table.assign(pair="t->s", rank=[1, 2, 3])
    assert latency_vs_leader(same_pair).tolist() == ["", "same", "faster"]


def test_studies_a_leaderboard_cannot_measure_again_are_named_once_per_cause(tmp_path, monkeypatch):
    from harness.store.location import open_location
    from harness.study.windows import measure_in_one_window
    from tests.fake_studies import write_study

    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "no-data"))  # MNIST is nowhere: no study can be measured
    for name, window in (("kd-a", "w1"), ("kd-b", "w2")):
        folder = write_study(tmp_path / "studies", name, "kd", 2, dataset="mnist")
        info = json.loads((folder / "study.json").read_text())
        info["spec"]["dataset"]["download"] = False  # nor fetched, where the machine could
        (folder / "study.json").write_text(json.dumps(info))
        path = folder / "trials.parquet"
        pd.read_parquet(path).assign(latency_window=window).to_parquet(path, index=False)
    lines = []
    measure_in_one_window(open_location(tmp_path / "studies"), None, None, say=lines.append)
    assert len(lines) == 1, lines
    assert lines[0].startswith("mnist (cpu): kd-a, kd-b not measured again (ranked on their own windows' figures): ")
    assert "dataset.download is false" in lines[0] and "HARNESS_DATA" in lines[0]


def test_a_leaderboard_plans_one_window_per_data_set_and_device_kind(tmp_path):
    from harness.store.location import open_location
    from harness.study.windows import plan_groups
    from tests.fake_studies import write_study

    for name, window, finished in (("kd", "w1", True), ("scratch", "w1", True), ("c2s2", None, False)):
        folder = write_study(tmp_path, name, name, 3, finished=finished)
        trials = pd.read_parquet(folder / "trials.parquet")
        if window:
            trials.assign(latency_window=window).to_parquet(folder / "trials.parquet", index=False)
    [group] = plan_groups(open_location(tmp_path))
    assert (group.dataset, group.device, sorted(group.measurable)) == ("digits", "cpu", ["kd", "scratch"])
    assert group.left == ["c2s2: interrupted"] and "w1" in group.windows and len(group.windows) == 4
    write_study(tmp_path, "c2s2", "c2s2", 3)  # finished now, measured in another window
    for name in ("kd", "scratch", "c2s2"):
        path = tmp_path / name / "trials.parquet"
        pd.read_parquet(path).assign(latency_window="w2" if name == "c2s2" else "w1").to_parquet(path, index=False)
    [group] = plan_groups(open_location(tmp_path))
    assert group.windows == {"w1", "w2"} and len(group.measurable) == 3 and not group.left
