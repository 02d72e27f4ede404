"""A method from outside the project passes the checks ours pass, before anything runs."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import SpecError
from tests.support.specs import small_spec

METHOD = textwrap.dedent('''
    from dataclasses import dataclass

    from methods.base import SupervisedMethod, TrainParams
    from methods.knobs import POSITIVE, knob


    @dataclass
    class HintParams(TrainParams):
        hint_weight: float = knob({default}, POSITIVE, help="weight of the hint term")
        mode: str = knob("l2", choices=("l2", "l1"), help="the hint's distance")


    class Hint(SupervisedMethod):
        Params = HintParams

        def train_step(self, epoch):
            return {{}}
''')


def _package(tmp_path, name, default="0.5", helper=""):
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "method.py").write_text(("from . import helpers\n" if helper else "") + METHOD.format(default=default))
    if helper:
        (package / "helpers.py").write_text(helper)
    return package


def test_a_well_formed_outside_method_is_accepted(tmp_path):
    package = _package(tmp_path, "goodhint")
    (package / "cluster_tools.py").write_text("import ray\n")  # the package's, but not the method's: not run in a trial
    spec = small_spec(**{"method": "goodhint.method:Hint", "code": f"[{package}]",
                         "search.space": "{hint_weight: {uniform: [0.1, 1.0]}}"})
    assert spec.method == "goodhint.method:Hint"


@pytest.mark.parametrize("name, default, helper, expected", [
    ("rayhint", "0.5", "import numpy\nfrom ray import tune\n",
     r"^method 'rayhint.method:Hint': .*rayhint/helpers.py:2 imports Ray; a method is plain PyTorch"),
    ("badhint", "-1.0", "",
     r"^method 'badhint.method:Hint': the default of knob 'hint_weight' must be above 0, got -1$"),
])
def test_an_outside_method_that_breaks_a_rule_is_refused_in_one_line(tmp_path, name, default, helper, expected):
    package = _package(tmp_path, name, default, helper)
    with pytest.raises(SpecError, match=expected) as refused:
        small_spec(**{"method": f"{name}.method:Hint", "code": f"[{package}]"})
    assert "\n" not in str(refused.value)


LEAKY = textwrap.dedent('''
    from methods.base import SupervisedMethod


    class Leaky(SupervisedMethod):
        needs_teacher = False

        def __init__(self, ctx, params):
            super().__init__(ctx, params)
            self.order = iter(range(10))  # an iterator: a resumed trial would lose its place

        def train_step(self, epoch):
            next(self.order)
            return {}
''')


def test_an_outside_method_whose_checkpoint_cannot_hold_its_state_is_refused_before_ray(tmp_path, capsys):
    import yaml

    from harness.cli.main import main

    package = tmp_path / "leaky"
    package.mkdir()
    (package / "__init__.py").write_text(LEAKY)
    spec = {"study": "leaky", "method": "leaky:Leaky", "code": [str(package)], "student": {"model": "lenet5_half"},
            "budget": {"epochs": 2}, "search": {"num_samples": 2, "space": {"lr": {"loguniform": [0.01, 0.05]}}}}
    path = tmp_path / "leaky.yaml"
    path.write_text(yaml.safe_dump(spec))
    for command in ("check", "sweep"):
        assert main([command, str(path), "--storage", str(tmp_path / "studies")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [err] and "Leaky.order: a range_iterator cannot be saved in a checkpoint" in err
    assert not (tmp_path / "studies" / spec["study"] / "tune").exists()  # no trial ran


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_method"


def test_an_installed_packages_method_is_listed_and_named_by_its_entry_point(tmp_path, monkeypatch, capsys):
    from harness.cli.main import main

    # What `pip install examples/my_method` leaves in site-packages: the package and its dist-info.
    dist = tmp_path / "my_method-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-method\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[compression_harness.methods]\nhint_kd = my_method.hint_kd:HintKD\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert main(["list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "hint_kd" in line]
    assert listed and listed[0].startswith("method   hint_kd (installed: my_method.hint_kd:HintKD): knobs (defaults) ")
    assert "hint_weight=1.0" in listed[0]
    spec = small_spec(**{"method": "hint_kd", "search.space": "{hint_weight: {loguniform: [0.01, 1.0]}}"})
    assert spec.method == "hint_kd"
    with pytest.raises(SpecError, match=r"hint_weight: must be at least 0, got -1"):
        small_spec(**{"method": "hint_kd", "search.space": "{hint_weight: -1}"})


DATA_FREE = textwrap.dedent('''
    import torch

    from methods.data_free import DataFreeDistillation, Draw


    class Noise(DataFreeDistillation):
        def draw(self, batch_size):
            x = torch.randn(batch_size, *self.ctx.input_shape, device=self.ctx.device, generator=self.ctx.generator)
            with torch.no_grad():
                return Draw(x, self.ctx.teacher(x))
''')


def test_an_outside_data_free_method_gets_the_same_withheld_splits(tmp_path, digits):
    from harness.study.sweep import trial_splits

    package = tmp_path / "mynoise"
    package.mkdir()
    (package / "__init__.py").write_text(DATA_FREE)
    spec = small_spec(**{"method": "mynoise:Noise", "code": f"[{package}]",
                         "search.space": "{lr_student: {loguniform: [0.001, 0.01]}}"})
    shipped = trial_splits(spec, digits)
    assert len(shipped.train) == 0 and len(shipped.val) == len(digits.val)
