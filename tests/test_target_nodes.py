"""A deployment target's latency is measured on the node that matches it, and only there.

A real Ray cluster on this machine (tests/ray_cluster.py): a head node without the
target's resource, and nodes started with ``--resources='{"edge_x86": 1}'`` and another
CPU count. The study runs in its own driver, as a user's would; a target node is killed
while its window measures.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

from tests.ray_cluster import LocalCluster  # noqa: E402
from tests.support.drivers import finish  # noqa: E402

EDGE = '--resources={"edge_x86": 1}'
SPEC = {
    "study": "edge", "method": "kd",
    "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2, "batch_size": 64}},
    "student": {"model": "lenet5_half", "width": 0.5},
    "budget": {"epochs": 2},
    "deploy": {"targets": {"edge": {"runtime": "onnxruntime", "batch": [1, 8], "threads": 2,
                                    "node": {"resources": {"edge_x86": 1}}}}},
    "search": {"searcher": "nsga2", "num_samples": 2, "space": {"lr": {"loguniform": [0.01, 0.05]}},
               "objectives": [{"metric": "val_acc", "mode": "max"},
                              {"metric": "latency", "target": "edge", "batch": 1, "mode": "min"}]},
    "asha": {"grace_period": 2},
    "measure": {"repeats": 3},
}


def _harness(cluster: LocalCluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args, "--address", cluster.address],
                            env=cluster.env, cwd=Path(__file__).resolve().parents[1], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_while_measuring(cluster: LocalCluster, driver: subprocess.Popen, nodes: list[str]) -> str:
    """Wait until one of ``nodes`` runs the target's window, kill that node; which one it was."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        node = cluster.running("_window")
        if node in nodes:
            time.sleep(2)  # well inside the window: it measures for tens of seconds
            cluster.kill_node(node)
            return node
        time.sleep(0.5)
    pytest.fail("the target's window never ran on a target node: " + (driver.stdout.read() or "")[-2000:])


@pytest.fixture(scope="module")
def study(cluster, tmp_path_factory):
    storage = tmp_path_factory.mktemp("edge")
    edge = cluster.add_node(EDGE, cpus=2)
    spec = storage / "edge.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    finish(_harness(cluster, "sweep", str(spec), "--storage", str(storage)))
    return storage / "edge", edge


def test_every_figure_of_a_target_comes_from_the_node_that_matches(cluster, study):
    folder, edge = study
    trials = pd.read_parquet(folder / "trials.parquet")
    latencies = pd.read_parquet(folder / "latencies.parquet")
    completed = trials[trials.status.eq("completed")]
    assert len(completed) == 2
    # In each trial (the objective) and after the search: on the edge node only, at its thread count.
    assert completed["latency_node@edge"].eq(edge).all() and completed["latency_ms@edge.b1"].gt(0).all()
    assert len(latencies) == 4 and latencies.node_id.eq(edge).all() and latencies.threads.eq(2).all()
    assert sorted(latencies.batch) == [1, 1, 8, 8] and latencies.latency_ms.gt(0).all()
    assert latencies.missing.isna().all()
    # The trials themselves ran wherever a CPU was free: the head took some work too.
    assert set(cluster.nodes) - {edge}


def test_a_killed_target_node_is_replaced_by_a_matching_one_or_its_figures_left_missing(cluster, study):
    folder, first = study
    second = cluster.add_node(EDGE, cpus=2)
    driver = _harness(cluster, "remeasure", str(folder), "--rounds", "300")
    killed = _kill_while_measuring(cluster, driver, [first, second])
    survivor = second if killed == first else first
    out = finish(driver)
    latencies = pd.read_parquet(folder / "latencies.parquet")
    assert latencies.node_id.eq(survivor).all() and latencies.missing.isna().all(), out[-2000:]
    assert "target edge (onnxruntime, batch 1, 8, 2 threads, on a node with edge_x86=1): 2 distinct network(s) " \
           "measured in one window on node" in out

    # The last node that matches goes too: the figures are left missing, said so, never taken elsewhere.
    driver = _harness(cluster, "remeasure", str(folder), "--rounds", "300")
    assert _kill_while_measuring(cluster, driver, [survivor]) == survivor
    out = finish(driver)
    assert ("target edge (onnxruntime, batch 1, 8, 2 threads, on a node with edge_x86=1): not measured, no node "
            "that matches it is left in the cluster; its figures are left missing") in out
    latencies = pd.read_parquet(folder / "latencies.parquet")
    assert latencies.missing.notna().all() and latencies.latency_ms.isna().all() and latencies.node_id.isna().all()
    # The default target's figures were measured as usual.
    assert "latency of 2 completed trial(s)" in out
