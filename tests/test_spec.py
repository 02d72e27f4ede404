from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec.load import load_spec, parse_spec
from methods.study import Distribution
from tests.support.specs import is_chain_step, small_spec


def test_search_space_parses_every_distribution_kind_and_fixed_values():
    spec = small_spec(**{
        "search.space": "{lr: {loguniform: [1e-3, 0.1]}, alpha: {uniform: [0, 1]}, "
                        "batch_size: {categorical: [32, 64]}, tau: {int: [1, 8]}, momentum: 0.8}",
    })
    searched = spec.searched_params()
    assert searched["lr"] == Distribution("loguniform", [1e-3, 0.1])  # "1e-3" read as a number
    assert searched["tau"] == Distribution("int", [1, 8])
    assert searched["batch_size"].kind == "categorical"
    assert spec.fixed_params() == {"momentum": 0.8}


def test_defaults_fill_unspecified_sections():
    spec = small_spec()
    assert spec.asha.grace_period == 1 and spec.resources.cpu == 1.0
    assert spec.sampler == "tpe"
    two = "[{metric: val_acc, mode: max}, {metric: macs, mode: min}]"
    assert small_spec(**{"search.objectives": two}).sampler == "nsga2"


@pytest.mark.parametrize("change, message", [
    ({"budgett": "3"}, "budgett: unknown key (did you mean 'budget'?)"),
    ({"search.num_sample": "3"}, "search.num_sample: unknown key (did you mean 'num_samples'?)"),
    ({"method": "kdd"}, "method: unknown method 'kdd' (did you mean 'kd'?)"),
    ({"student.model": "lenet"}, "student.model: unknown model 'lenet' (did you mean 'lenet5'?)"),
    ({"dataset.name": "mnits"}, "dataset.name: unknown dataset 'mnits' (did you mean 'mnist'?)"),
    ({"search.space.lr": "{loguniform: [0.1]}"}, "search.space.lr.loguniform: expected [low, high]"),
    ({"search.space.lr": "{loguniform: [0, 0.1]}"}, "bounds must be positive"),
    ({"search.space.lr": "{uniform: [0.5, 0.1]}"}, "low must be below high"),
    ({"search.space.lr": "{normal: [0, 1]}"}, "unknown distribution 'normal'"),
    ({"search.space.lr": "{uniform: [0, 1], int: [1, 2]}"}, "a distribution is one key"),
    ({"search.space.temperature": "2"}, "'kd' has no knob 'temperature'"),
    ({"search.space.lr": "foo"}, "search.space.lr: expected a number, got 'foo'"),
    ({"search.space.tau": "true"}, "search.space.tau: expected a number, got True"),
    ({"search.space.batch_size": "{categorical: [32, big]}"},
     "search.space.batch_size.categorical: expected an integer, got 'big'"),
    ({"teacher.recipe.lr": "fast"}, "teacher.recipe.lr: expected a number, got 'fast'"),
    ({"search.space.tau": "-1"}, "search.space.tau: must be above 0, got -1"),
    ({"search.space.alpha": "{uniform: [0.5, 1.5]}"}, "search.space.alpha.uniform: must be in [0, 1], got 1.5"),
    ({"search.space.momentum": "{categorical: [0.9, 1]}"},
     "search.space.momentum.categorical: must be in [0, 1), got 1"),
    ({"search.space.batch_size": "0"}, "search.space.batch_size: must be at least 1, got 0"),
    ({"teacher.recipe.weight_decay": "-0.1"}, "teacher.recipe.weight_decay: must be at least 0, got -0.1"),
    ({"teacher.recipe.epochs": "2.5"}, "teacher.recipe.epochs: expected an integer, got 2.5"),
    ({"teacher.recipe.epochs": "0"}, "teacher.recipe.epochs: must be in [1, 10000], got 0"),
    ({"search.objectives": "[{metric: test_acc, mode: max}]"}, "is the test split, reported only"),
    ({"search.objectives": "[{metric: macs, mode: min}]"}, "first objective drives ASHA"),
    ({"search.objectives": "[{metric: val_acc, mode: up}]"}, "mode: must be 'max' or 'min'"),
    ({"budget.epochs": "two"}, "budget.epochs: expected an integer"),
    ({"measure.rounds": "-1"}, "measure.rounds: must be in [0, 1000], got -1"),
    ({"asha.grace_period": "5"}, "asha.grace_period: 5 exceeds budget.epochs"),
    ({"asha.stop_at_chance": "sometimes"}, "asha.stop_at_chance: expected"),
    ({"teacher.recipe.epoch": "3"}, "teacher.recipe.epoch: unknown knob (did you mean 'epochs'?)"),
    ({"teacher.checkpoint": "/nonexistent.pt"}, "teacher.checkpoint: file '/nonexistent.pt' does not exist"),
])
def test_invalid_specs_name_the_field_and_the_fix(change, message):
    with pytest.raises(SpecError) as info:
        small_spec(**change)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_knobs_with_named_values_are_checked_before_running():
    base = {"method": "c2s2", "student.width": "1.0", "student.model": "lenet5_half"}
    with pytest.raises(SpecError, match="search.space.target_metric: unknown value 'flops'"):
        small_spec(**base, **{"search.space": "{target_metric: flops}"})
    with pytest.raises(SpecError,
                       match=r"search.space.scope.categorical: unknown value 'globl' \(did you mean 'global'\?\)"):
        small_spec(**{**base, "method": "filter_pruning_kd"},
                   **{"search.space": "{scope: {categorical: [layer, globl]}}"})
    with pytest.raises(SpecError, match="'target_metric' is not numeric, so it takes a fixed value or"):
        small_spec(**base, **{"search.space": "{target_metric: {uniform: [0, 1]}}"})
    with pytest.raises(SpecError, match=r"search.space.target_ratio: must be in \(0, 1\], got 1.5"):
        small_spec(**base, **{"search.space": "{target_ratio: 1.5}"})
    with pytest.raises(SpecError,
                       match=r"search.space.skip: expected unit indices separated by commas, e.g. '0,3'; got '0;2'"):
        small_spec(**{**base, "method": "filter_pruning_kd"}, **{"search.space": "{skip: '0;2'}"})
    assert small_spec(**{**base, "method": "filter_pruning_kd"}, **{"search.space": "{skip: '0, 2'}"}).fixed_params()
    with pytest.raises(SpecError, match=r"search.space.ratio.uniform: must be in \[0, 1\), got 1"):
        small_spec(**{**base, "method": "filter_pruning_kd"}, **{"search.space": "{ratio: {uniform: [0.2, 1.0]}}"})
    with pytest.raises(SpecError, match=r"prune_epochs: pruning for 2 of budget.epochs \(2\) leaves no epoch"):
        small_spec(**base, **{"search.space": "{prune_epochs: {int: [1, 2]}}"})
    with pytest.raises(SpecError, match=r"^budget.epochs: pruning for 1 of budget.epochs \(1\)"):
        small_spec(**base, **{"budget.epochs": "1", "asha.grace_period": "1"})
    fixed = small_spec(**base, **{"search.space": "{target_metric: params}"}).fixed_params()
    assert fixed == {"target_metric": "params"}


def test_required_fields_and_teacher_requirement():
    with pytest.raises(SpecError, match="student: required field is missing"):
        parse_spec({"study": "x", "method": "scratch"})
    with pytest.raises(SpecError, match="needs a teacher"):
        parse_spec({"study": "x", "method": "kd", "student": {"model": "lenet5"}})
    assert parse_spec({"study": "x", "method": "scratch", "student": {"model": "lenet5"}}).teacher is None


def test_overrides_from_the_command_line_reach_nested_fields(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("study: s\nmethod: scratch\nstudent: {model: lenet5}\n")
    spec = load_spec(path, ["search.num_samples=3", "search.space.lr={uniform: [0.01, 0.1]}", "seeds=[1, 2]"])
    assert spec.search.num_samples == 3
    assert spec.searched_params()["lr"] == Distribution("uniform", [0.01, 0.1])
    assert spec.seeds == [1, 2]
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        load_spec(path, ["search.num_samples"])


def test_unreadable_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(bad)


def test_shipped_search_spaces_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    specs = sorted(root.glob("search_spaces/**/*.yaml")) + sorted(root.glob("benchmarks/*.yaml"))
    assert len({path.parent.name for path in specs}) >= 3  # search_spaces, its paper/ studies, benchmarks
    for path in specs:
        if not is_chain_step(path):
            load_spec(path)


def test_a_study_can_be_run_again_from_its_results_folder(tmp_path):
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [*root.glob("search_spaces/**/*.yaml"), root / "benchmarks/search_kd_mnist_verywide.yaml"]:
        if is_chain_step(path):
            continue
        spec = load_spec(path)
        folder = tmp_path / spec.study
        folder.mkdir(exist_ok=True)
        (folder / "study.json").write_text(json.dumps({"study": spec.study, "spec": spec.to_dict()}, default=str))
        assert load_spec(folder) == spec, path
        assert load_spec(folder / "study.json", ["seeds=[7]"]).seeds == [7]  # --set applies on top
    with pytest.raises(SpecError, match="is a folder without a study.json"):
        load_spec(tmp_path)


def test_a_method_by_import_path_is_a_method_class_of_shipped_code(tmp_path):
    package = tmp_path / "mymethods"
    package.mkdir()
    (package / "__init__.py").write_text("class NotAMethod:\n    pass\n")
    with pytest.raises(SpecError, match=r"^method: 'mymethods:NotAMethod' is not a method: a subclass of Method"):
        small_spec(**{"method": "mymethods:NotAMethod", "code": f"[{package}]"})
    with pytest.raises(SpecError, match=r"^method: cannot import 'nowhere' \(ModuleNotFoundError"):
        small_spec(method="nowhere:Method")
    sleeper = Path(__file__).resolve().parents[1] / "benchmarks" / "sleeper"
    spec = small_spec(**{"method": "sleeper:Sleep", "code": f"[{sleeper}]", "search.space": "{seconds: 0.0}"})
    assert spec.fixed_params()["seconds"] == 0.0


@pytest.mark.parametrize("field, value", [
    ("budget.epochs", "1000000000000"), ("budget.epochs", "10001"), ("teacher.recipe.epochs", "10001"),
    ("asha.grace_period", "20000"), ("search.max_concurrent", "100000"), ("search.startup_trials", "20000"),
    ("asha.reduction_factor", "1000"), ("resources.cpu", "5000"), ("resources.gpu", "100"),
    ("resources.retries", "1000"), ("measure.batch_size", "1000000"), ("measure.warmup", "100000"),
    ("measure.repeats", "100000"), ("measure.rounds", "5000"), ("measure.attempts", "1000"),
    ("measure.max_spread", "1000"),
])
def test_every_count_past_its_bound_is_one_line_naming_the_field(field, value):
    with pytest.raises(SpecError, match=rf"^{re.escape(field)}: must be ") as caught:
        small_spec(**{field: value})
    assert "\n" not in str(caught.value)


def test_a_huge_budget_stops_check_and_sweep_before_anything_is_moved(tmp_path, capsys):
    from harness.cli.main import main

    earlier = tmp_path / "studies" / "kd-digits"
    earlier.mkdir(parents=True)
    (earlier / "study.json").write_text("{}")
    for command in ("check", "sweep"):
        args = [command, "kd", "--storage", str(tmp_path / "studies"), "--set", "budget.epochs=1000000000000"]
        assert main(args) == 2
        assert capsys.readouterr().err == "error: budget.epochs: must be in [1, 10000], got 1000000000000\n"
    assert sorted(p.name for p in (tmp_path / "studies").iterdir()) == ["kd-digits"]
    assert [p.name for p in earlier.iterdir()] == ["study.json"]
