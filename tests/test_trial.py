"""Trial options that do not need Ray: bf16 autocast, channels-last, torch.compile, the device a trial claims."""
from __future__ import annotations

import pytest
import torch

from harness.errors import SpecError
from harness.networks.zoo import create_model
from harness.study.trial import autocast, claim_device, prepare_model, run_trial
from methods.training import evaluate
from tests.support.specs import small_spec


def test_bf16_trains_under_autocast_and_still_learns(digits):
    spec = small_spec(method="scratch", teacher="null", **{"resources.precision": "bf16", "budget.epochs": "3",
                                                            "search.space": "{}"})
    seen = set()
    original = torch.nn.Linear.forward

    def spy(self, x):
        out = original(self, x)
        seen.add(out.dtype)
        return out

    reports = []
    torch.nn.Linear.forward = spy
    try:
        run_trial({"lr": 0.05, "batch_size": 32}, spec, 0, digits, None, reports.append)
    finally:
        torch.nn.Linear.forward = original
    assert torch.bfloat16 in seen  # training ran in bf16
    assert torch.float32 in seen  # evaluation did not
    assert reports[-1]["val_acc"] > 0.5


def test_fp32_is_the_default_and_no_autocast_runs():
    spec = small_spec()
    assert spec.resources.precision == "fp32"
    with autocast(spec.resources, torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")


def test_precision_and_retries_are_validated():
    with pytest.raises(SpecError, match="resources.precision: 'fp16'"):
        small_spec(**{"resources.precision": "fp16"})
    with pytest.raises(SpecError, match="resources.retries"):
        small_spec(**{"resources.retries": "-1"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_a_gpu_share_without_a_gpu_runs_on_the_cpu():
    assert claim_device(small_spec(**{"resources.gpu": "0.25"}).resources).type == "cpu"


def test_channels_last_trains_the_same_network_in_nhwc(digits):
    spec = small_spec(method="scratch", teacher="null", **{"resources.channels_last": "true", "budget.epochs": "3",
                                                            "student.width": "1.0", "search.space": "{}"})
    reports = []
    student = run_trial({"lr": 0.05, "batch_size": 32}, spec, 0, digits, None, reports.append)
    conv = student.feature_extractor[3].weight  # the second conv: with one input channel both layouts coincide
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert set(student.state_dict()) == set(create_model("lenet5_half", 10).state_dict())  # same checkpoints
    assert reports[-1]["val_acc"] > 0.5


def test_evaluate_counts_every_sample_once(digits):
    from harness.data.batches import DeviceSplit

    split = DeviceSplit(digits.val, digits.mean, digits.std, torch.device("cpu"))
    model = create_model("lenet5_half", 10).eval()
    with torch.no_grad():
        logits = model(split.x)
    expected = (logits.argmax(1) == split.y).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, split.y).item()
    result = evaluate(model, split, batch_size=7)  # several batches and a short last one
    assert result["acc"] == pytest.approx(expected) and result["loss"] == pytest.approx(loss, rel=1e-5)


@pytest.mark.slow
def test_compile_keeps_the_module_its_keys_and_its_outputs():
    torch.manual_seed(0)
    plain = create_model("lenet5_half", 10).eval()
    compiled = prepare_model(create_model("lenet5_half", 10), compile=True).eval()
    compiled.load_state_dict(plain.state_dict())  # same keys: no "_orig_mod." prefix
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(compiled(x), plain(x), atol=1e-5)
    assert type(compiled) is type(plain)
