"""Trial options that do not need Ray: bf16 autocast and the device a trial claims."""
from __future__ import annotations

import pytest
import torch

from harness.errors import SpecError
from harness.trial import autocast, claim_device, run_trial
from tests.conftest import small_spec


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
