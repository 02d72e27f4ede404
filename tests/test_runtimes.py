"""Every runtime a network can be deployed in runs it as eager PyTorch does, at the threads
asked for, and times it; one that cannot run here says why in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.measure.runtimes import RUNTIMES, RuntimeUnavailable, Session, installed, missing
from harness.networks.zoo import create_model
from methods.surgery import ChannelSurgeon


def _pruned_lenet() -> torch.nn.Module:
    """LeNet-5 with odd channel counts left (what unrounded pruning leaves)."""
    model = create_model("lenet5", 10, 1.0, (1, 28, 28)).eval()
    surgeon = ChannelSurgeon(model, torch.zeros(1, 1, 28, 28))
    for conv in surgeon.units():
        surgeon.remove(conv, list(range(conv.out_channels // 3)))
    return model


def test_every_runtime_the_harness_declares_is_installed():
    assert installed() == list(RUNTIMES)  # onnxruntime and openvino are dependencies of the tests


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_gives_eager_pytorch_logits_and_a_latency(runtime):
    threads = torch.get_num_threads()
    for model in (create_model("lenet5_half", 10, 1.0, (1, 28, 28)).eval(), _pruned_lenet()):
        session = Session(model, (1, 28, 28), runtime, threads=1)
        x = session.batch(8)
        with torch.no_grad():
            expected = model(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(session(x), expected, atol=1e-4, rtol=1e-4)
        assert session(session.batch(1)).shape == (1, 10)  # the batch is dynamic
        assert 0 < session.latency_ms(1, warmup=1, repeats=3) < 1000
    assert torch.get_num_threads() == threads  # a session's threads do not leak into the process


def test_what_cannot_run_is_one_line():
    assert missing("tensorrt") == ("unknown runtime 'tensorrt' (known: torch, torch_compile, onnxruntime, "
                                   "openvino)")
    model = create_model("lenet5_half", 10, 1.0, (1, 28, 28))
    with pytest.raises(RuntimeUnavailable, match=r"^unknown runtime 'tvm'"):
        Session(model, (1, 28, 28), "tvm", 1)
    with pytest.raises(RuntimeUnavailable, match=r"^threads: must be at least 1, got 0$"):
        Session(model, (1, 28, 28), "onnxruntime", 0)
