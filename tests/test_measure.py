from __future__ import annotations

import torch
from torch import nn

from harness.measure.cost import count_macs, count_params, device_name, latency_ms, measure_model, serialized_size
from harness.networks.zoo import create_model

CPU = torch.device("cpu")


def test_macs_of_known_layers():
    assert count_macs(nn.Linear(10, 5), (10,), CPU) == 50
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (3, 16, 16), CPU) == 8 * 16 * 16 * 3 * 9
    lenet = create_model("lenet5", 10)
    # conv1 28x28x6x25 + conv2 10x10x16x150 + c5 120x400 + fc 120x84 + 84x10
    assert count_macs(lenet, (1, 28, 28), CPU) == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10


def test_size_tracks_parameters():
    small, large = nn.Linear(10, 10), nn.Linear(100, 100)
    assert count_params(large) == 10_100
    assert serialized_size(large) > 4 * 10_100 > serialized_size(small)


def test_latency_grows_with_work_and_measure_reports_everything():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    small = nn.Sequential(nn.Linear(256, 256))
    big = nn.Sequential(*[nn.Linear(256, 256) for _ in range(16)])
    x = torch.randn(64, 256)
    assert latency_ms(big, x, repeats=5) > 3 * latency_ms(small, x, repeats=5)
    m = measure_model(create_model("lenet5_half", 10), (1, 28, 28), CPU, batch_size=8, repeats=3)
    assert set(m) >= {"params", "size_bytes", "macs", "latency_b1_ms", "latency_ms", "latency_batch", "device"}
    assert m["latency_ms"] > 0 and m["latency_batch"] == 8 and m["device"].endswith(" (1 thread)")
    torch.set_num_threads(2)
    assert device_name(CPU).endswith(" (2 threads)")
    torch.set_num_threads(threads)  # no leak into the tests after this one


def test_studies_measured_together_share_one_figure_per_distinct_network():
    from harness.study.remeasure import StudyStudents, measure_studies
    from tests.support.specs import small_spec

    settings = {"measure.repeats": "2", "measure.warmup": "1", "measure.batch_size": "4"}
    spec, alone = small_spec(**settings), small_spec(**{"method": "scratch", **settings})
    shape = (1, 28, 28)
    narrow = create_model("lenet5_half", 10, 0.25, shape)  # what a pruned student's weights look like
    full, other_weights = (create_model("lenet5_half", 10, spec.student.width, shape) for _ in range(2))
    teacher = create_model(spec.teacher.model, 10, spec.teacher.width, shape)
    kd, scratch = measure_studies(
        [StudyStudents(spec, 10, shape, {"p": narrow.state_dict(), "f": full.state_dict()}, teacher.state_dict()),
         StudyStudents(alone, 10, shape, {"f": other_weights.state_dict()}, None, same_as={"g": "f"})], rounds=3,
        resources=spec.resources)
    assert kd["p"]["params_measured"] == count_params(narrow) < kd["f"]["params_measured"]
    # The same architecture in two studies, with other weights: one network, timed once, one figure.
    shared = ("latency_ms", "latency_b1_ms", "latency_low_ms", "latency_high_ms", "network", "latency_window")
    assert [kd["f"][k] for k in shared] == [scratch["f"][k] for k in shared] == [scratch["g"][k] for k in shared]
    assert kd["p"]["network"] != kd["f"]["network"] and kd["p"]["latency_window"] == kd["f"]["latency_window"]
    for measured in (*kd.values(), *scratch.values()):
        assert measured["latency_rounds"] == 3 and measured["latency_spread"] >= 0
        assert 0 < measured["latency_low_ms"] <= measured["latency_ms"] <= measured["latency_high_ms"]
    assert kd["p"]["teacher_latency_ms"] == kd["f"]["teacher_latency_ms"] > 0
    assert "teacher_latency_ms" not in scratch["f"]
