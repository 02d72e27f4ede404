"""Methods run in a plain PyTorch loop, no Ray."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import methods
from harness.data.batches import DeviceData
from harness.networks.zoo import create_model
from methods.training import evaluate, freeze, kd_loss
from tests.support.contexts import method_context


def _context(digits, teacher=None, epochs=3):
    data = DeviceData(digits, torch.device("cpu"))
    return method_context(teacher=teacher, data=data, epochs=epochs), data


def test_kd_loss_matches_hinton_formula():
    torch.manual_seed(0)
    zs, zt, tau = torch.randn(5, 10), torch.randn(5, 10), 3.0
    p_t = F.softmax(zt / tau, 1)
    manual = (p_t * (p_t.log() - F.log_softmax(zs / tau, 1))).sum(1).mean() * tau ** 2
    assert torch.allclose(kd_loss(zs, zt, tau), manual, atol=1e-6)
    assert kd_loss(zt, zt, tau).abs() < 1e-6


def test_kd_with_alpha_zero_is_cross_entropy(digits):
    kd = methods.METHODS.get("kd")
    ctx, data = _context(digits, teacher=freeze(create_model("lenet5", 10)))
    method = kd(ctx, kd.make_params({"alpha": 0.0}))
    x, y = data.train.x[:16], data.train.y[:16]
    assert torch.allclose(method.loss(x, y), F.cross_entropy(ctx.student(x), y))


def test_scratch_learns_digits_in_a_plain_loop(digits):
    scratch = methods.METHODS.get("scratch")
    ctx, data = _context(digits, epochs=6)
    method = scratch(ctx, scratch.make_params({"lr": 0.05, "batch_size": 32}))
    before = evaluate(method.export(), data.val)["acc"]
    losses = [method.train_step(e)["train_loss"] for e in range(6)]
    after = evaluate(method.export(), data.val)["acc"]
    assert losses[-1] < losses[0] and math.isfinite(losses[-1])
    assert before < 0.3 and after > 0.8


def test_make_params_casts_search_values_to_knob_types():
    kd = methods.METHODS.get("kd")
    params = kd.make_params({"batch_size": 64.0, "tau": 2, "lr": "0.1"})
    assert params.batch_size == 64 and isinstance(params.batch_size, int)
    assert isinstance(params.tau, float) and params.lr == 0.1
    assert methods.METHODS.get("filter_pruning_kd").make_params({"skip": 3}).skip == "3"  # YAML's `skip: 3`
    for knob, value, expected in (("lr", "fast", "a number"), ("batch_size", True, "an integer"),
                                  ("batch_size", 95.7, "an integer"), ("tau", [1, 2], "a number"),
                                  ("lr", float("nan"), "a number")):
        with pytest.raises(ValueError, match=f"{knob}: expected {expected}"):
            kd.make_params({knob: value})


def test_spec_fields_and_knobs_follow_one_coercion_rule():
    from harness.errors import SpecError
    from methods.knobs import coerce
    from tests.support.specs import small_spec

    cases = [(int, "5", 5), (int, 5.0, 5), (float, "1e-3", 1e-3), (str, 3, "3"), (bool, True, True)]
    for kind, value, expected in cases:
        assert coerce(kind, value) == expected and type(coerce(kind, value)) is kind
    for kind, value in [(int, 2.5), (int, True), (float, "inf"), (bool, "yes"), (str, None), (float, [1])]:
        with pytest.raises(ValueError, match="expected"):
            coerce(kind, value)
    # The same values through a spec field (budget.epochs) and through a knob (batch_size).
    assert small_spec(**{"budget.epochs": "'3'", "asha.grace_period": "1"}).budget.epochs == 3
    knobs = small_spec(**{"search.space.batch_size": "'32'"}).fixed_params()
    assert methods.METHODS.get("kd").make_params(knobs).batch_size == 32
    for field in ("budget.epochs", "search.space.batch_size"):
        with pytest.raises(SpecError, match=f"{field}: expected an integer, got 2.5"):
            small_spec(**{field: "2.5"})


def test_an_integer_knob_under_a_continuous_distribution_draws_whole_numbers():
    from optuna.distributions import IntDistribution

    from harness.study.search import optuna_space
    from tests.support.specs import small_spec

    spec = small_spec(**{"search.space": "{batch_size: {loguniform: [16, 256]}, tau: {uniform: [1, 4]}}"})
    space = optuna_space(spec)
    assert space["batch_size"] == IntDistribution(16, 256, log=True)
    assert not isinstance(space["tau"], IntDistribution)


def test_every_knob_default_is_within_its_own_bounds():
    from dataclasses import MISSING, fields

    from harness.spec.method_checks import check_method
    from methods.knobs import Bounds

    checked = 0
    for name in methods.METHODS.names():
        method = methods.METHODS.get(name)
        check_method(method, name)  # what a spec of the method checks: defaults within bounds, no Ray
        for f in fields(method.Params):
            assert f.default is not MISSING and method.cast_param(f.name, f.default) == f.default, (name, f.name)
            checked += "bounds" in f.metadata
    assert checked > 40
    assert 0.5 in Bounds(0, 1) and 0 not in Bounds(0, low_open=True) and 1 not in Bounds(0, 1, high_open=True)
    assert (str(Bounds(0, 1, high_open=True)), str(Bounds(1)), str(Bounds(0, low_open=True))) == (
        "in [0, 1)", "at least 1", "above 0")


def test_methods_import_nothing_of_the_harness_reports_or_ray():
    """A method sees the study through methods.study and its trial through MethodContext only."""
    import ast
    from pathlib import Path

    for path in sorted(Path(methods.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("harness", "reports", "ray"), f"{path.name} imports {name}"


def test_methods_do_not_import_ray():
    import subprocess
    import sys

    code = ("import sys, methods; "
            "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
