"""Bad input ends with exit status 2 and one line naming the cause."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from harness.cli.main import main

SPEC = """\
study: cli
method: kd
dataset: {name: digits}
teacher: {model: lenet5}
student: {model: lenet5_half}
search:
  space:
    lr: {loguniform: [0.01, 0.1]}
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize("overrides, cause", [
    (["searh.num_samples=2"], "searh: unknown key (did you mean 'search'?)"),
    (["method=dafll"], "method: unknown method 'dafll'"),
    (["student.model=lenet5_halff"], "did you mean 'lenet5_half'?"),
    (["dataset.name=cifar"], "did you mean 'cifar10'?"),
    (["search.space.lr={loguniform: [0.1, 0.01]}"], "search.space.lr.loguniform: low must be below high"),
    (["dataset.name=mnist", "dataset.root=/nonexistent/data", "dataset.download=false"],
     "dataset MNIST: no usable files under '/nonexistent/data'"),
    (["search.space.lr=0.05"], "search.space: every knob is fixed, so the 8 trials of a seed would be the same run"),
])
def test_bad_input_exits_2_with_one_line(spec_file, tmp_path, capsys, overrides, cause):
    args = ["sweep", str(spec_file), "--storage", str(tmp_path)]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and cause in err
    assert len(err.splitlines()) == 1


def test_module_entry_point_exits_2_without_traceback(spec_file):
    run = subprocess.run([sys.executable, "-m", "harness", "sweep", str(spec_file), "--set", "method=kdd"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: method: unknown method 'kdd' (did you mean 'kd'?)"


def test_the_console_script_and_its_version():
    import shutil
    from importlib.metadata import version
    from pathlib import Path

    script = shutil.which("harness", path=str(Path(sys.executable).parent))
    assert script, "the harness console script is not installed beside this interpreter"
    run = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == f"harness {version('compression-harness')}"


def test_check_validates_and_prints_the_plan_without_starting_ray(spec_file, tmp_path, capsys):
    import psutil
    import ray

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    connected = ray.is_initialized()  # by an earlier test's session-wide Ray, if one ran before this one
    assert main(["check", str(spec_file), "--storage", str(tmp_path), "--set", "seeds=[0, 1]"]) == 0
    out = capsys.readouterr().out
    assert "data      digits found: train 1294, validation 144" in out
    assert "teacher   lenet5: to be trained (20 epochs; scratch's defaults)" in out
    assert "search    8 trials per seed x 2 seed(s) [0, 1] = 16 trials; tpe (4 random startup trials)" in out
    assert "asha      budget 10 reports; may stop trials at 1, 2, 4, 8" in out
    assert "resources 1 CPU, 0 GPU, fp32 per trial; this machine" in out
    size = re.search(r"^size      16 trials x 10 epochs = at most 160 trial-epochs \(ASHA stops most trials sooner\); "
                     r"an epoch here: ([\d.]+) s \((\d+) steps of batch (\d+), timed on 1 thread\(s\)\)", out, re.M)
    assert size, out
    epoch_s, steps, batch = float(size[1]), int(size[2]), int(size[3])
    assert 0 < epoch_s < 10 and steps == -(-1294 // batch)  # an epoch of digits' training split
    assert out.rstrip().endswith("would run this study")
    assert ray.is_initialized() == connected
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before  # no Ray process started


def test_check_finds_a_cached_teacher(spec_file, tmp_path, capsys):
    import torch

    from harness.data.datasets import load_splits
    from harness.spec.load import load_spec
    from harness.study.teachers import cache_files, cache_key

    spec, data = load_spec(spec_file), load_splits("digits")
    weights, meta = cache_files(tmp_path, spec, data, cache_key(spec, data))
    weights.parent.mkdir(parents=True)
    torch.save({}, weights)
    meta.write_text("{}")
    assert main(["check", str(spec_file), "--storage", str(tmp_path)]) == 0
    assert f"teacher   lenet5: cached ({weights})" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, cause", [
    (["searh.num_samples=2"], "searh: unknown key (did you mean 'search'?)"),
    (["dataset.name=mnist", "dataset.root=/nonexistent/data", "dataset.download=false"],
     "dataset MNIST: no usable files under '/nonexistent/data'"),
    (["resources.gpu=64"], "resources: a trial needs 1 CPU and 64 GPU, and this machine has"),
    (["teacher.checkpoint=/nonexistent.pt"], "teacher.checkpoint: file '/nonexistent.pt' does not exist"),
    (["search.space.lr=0.05"], "search.space: every knob is fixed, so the 8 trials of a seed would be the same run"),
])
def test_check_refuses_what_the_sweep_would_refuse_in_one_line(spec_file, tmp_path, capsys, overrides, cause):
    args = ["check", str(spec_file), "--storage", str(tmp_path)]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and cause in err and len(err.splitlines()) == 1


def test_check_says_missing_data_will_be_downloaded(spec_file, tmp_path, capsys):
    assert main(["check", str(spec_file), "--set", "dataset.name=mnist", "--set", f"dataset.root={tmp_path}",
                 "--storage", str(tmp_path / "studies")]) == 0
    assert f"data      mnist: not under {tmp_path}; the sweep downloads it there" in capsys.readouterr().out


def test_list_as_json_describes_every_method_and_knob(capsys):
    import json

    import methods

    assert main(["list", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listing["methods"]] == methods.METHODS.names()
    kd = next(m for m in listing["methods"] if m["name"] == "kd")
    assert kd["family"] == "distillation" and kd["class"] == "methods.kd.HintonKD"
    tau = next(k for k in kd["knobs"] if k["name"] == "tau")
    assert tau == {"name": "tau", "type": "float", "default": 4.0, "choices": None, "allowed": "above 0",
                   "help": "softmax temperature of the soft targets"}
    assert "lenet5_half" in listing["models"] and "cifar100" in listing["datasets"]


def test_list_shows_registered_names(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "method   kd" in out and "alpha" in out and "lenet5_half" in out and "cifar100" in out
    assert "method   kd: knobs (defaults) lr=0.05, momentum=0.9," in out and "tau=4.0, alpha=0.9\n" in out
    assert "target_metric=macs (macs|params)" in out and "skip=''" in out and "alpha=null" in out


def test_resume_refuses_what_it_cannot_continue(spec_file, tmp_path, capsys):
    import json

    storage = tmp_path / "studies"
    assert main(["sweep", str(spec_file), "--storage", str(storage), "--resume"]) == 2
    assert "--resume: no study 'cli' to resume" in capsys.readouterr().err

    from harness.spec.load import load_spec

    (storage / "cli").mkdir(parents=True)
    saved = json.loads(json.dumps(load_spec(spec_file).to_dict(), default=str))
    saved["budget"]["epochs"] = 99
    (storage / "cli" / "study.json").write_text(json.dumps({"spec": saved, "ended_at": None}))
    assert main(["sweep", str(spec_file), "--storage", str(storage), "--resume"]) == 2
    assert "the spec differs from the interrupted study's in budget" in capsys.readouterr().err

    (storage / "cli" / "study.json").write_text(json.dumps({"spec": saved, "ended_at": "2026-11-23T10:00:00"}))
    assert main(["sweep", str(spec_file), "--storage", str(storage), "--resume"]) == 2
    assert "finished at" in capsys.readouterr().err


def test_a_rerun_that_cannot_start_leaves_the_previous_results_in_place(spec_file, tmp_path, capsys):
    folder = tmp_path / "studies" / "cli"
    folder.mkdir(parents=True)
    (folder / "trials.parquet").write_bytes(b"earlier results")
    args = ["sweep", str(spec_file), "--storage", str(tmp_path / "studies"),
            "--set", "dataset.name=mnist", "--set", "dataset.root=/nonexistent/data", "--set", "dataset.download=false"]
    assert main(args) == 2
    assert "no usable files" in capsys.readouterr().err
    assert (folder / "trials.parquet").read_bytes() == b"earlier results"
    assert not (folder / "previous").exists()


def test_a_rerun_from_a_results_folder_says_when_its_data_differ(spec_file, tmp_path, capsys, monkeypatch):
    import json

    import harness.study.sweep
    from harness.errors import HarnessError
    from harness.spec.load import load_spec

    def stop(address, code, **options):  # everything the note depends on has happened before Ray starts
        raise HarnessError("stopped before Ray")

    monkeypatch.setattr(harness.study.sweep, "connect", stop)
    folder = tmp_path / "recorded"
    folder.mkdir()
    record = {"study": "cli", "spec": load_spec(spec_file).to_dict(), "dataset": {"fingerprint": "digits-0000"}}
    (folder / "study.json").write_text(json.dumps(record, default=str))
    storage = ["--storage", str(tmp_path / "studies")]
    assert main(["sweep", str(folder), *storage]) == 2
    out = capsys.readouterr().out
    assert "note: these digits splits (digits-" in out and "are not the recorded study's (digits-0000)" in out

    fingerprint = out.split("note: these digits splits (")[1].split(")")[0]
    record["dataset"]["fingerprint"] = fingerprint
    (folder / "study.json").write_text(json.dumps(record, default=str))
    assert main(["sweep", str(folder / "study.json"), *storage]) == 2
    assert "note:" not in capsys.readouterr().out


def test_a_study_asking_for_more_gpus_than_this_machine_has_ends_at_once(ray_session, spec_file, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    folder = tmp_path / "studies" / "cli"
    folder.mkdir(parents=True)
    (folder / "trials.parquet").write_bytes(b"earlier results")
    assert main(["sweep", str(spec_file), "--storage", str(tmp_path / "studies"), "--set", "resources.gpu=64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: resources: a trial needs 1 CPU and 64 GPU on one node") and "\n" not in err
    assert (folder / "trials.parquet").read_bytes() == b"earlier results"


def test_checks_suggested_command_runs_what_was_checked(spec_file, tmp_path, capsys):
    import shlex

    from harness.cli.main import build_parser

    argv = ["check", str(spec_file), "--set", "search.num_samples=3", "--set", "search.space.tau={uniform: [1, 4]}",
            "--code", str(tmp_path), "--storage", str(tmp_path / "my studies"), "--num-samples", "2"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    suggested = re.fullmatch(r"ok: `(.+)` would run this study", last).group(1)
    words = shlex.split(suggested)
    assert words[:2] == ["harness", "sweep"]
    checked, again = build_parser().parse_args(argv), build_parser().parse_args(words[1:])
    for field in ("spec", "overrides", "code", "storage", "num_samples", "address"):
        assert getattr(again, field) == getattr(checked, field), field


def test_the_defaults_docs_cli_quotes_are_the_parser_s():
    from pathlib import Path

    from harness.cli.main import build_parser

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    usage = doc.split("```", 2)[1]
    commands = build_parser()._subparsers._group_actions[0].choices
    checked = 0
    for line in usage.strip().splitlines():
        words = line.split()
        if len(words) < 2 or words[1] not in commands:
            continue
        options = {o: a for a in commands[words[1]]._actions for o in a.option_strings}
        for flag, value in re.findall(r"\[(-[-\w]+) ([^\]\s]+)\]", line):
            action = options[flag]
            if all(part.isupper() for part in value.split("|")):  # a metavar (DIR|URI)
                continue
            if "|" in value:  # the choices, every one
                assert value.split("|") == list(action.choices), (line, flag)
            else:  # the default
                assert str(action.default) == value, (line, flag, action.default)
            checked += 1
    assert checked >= 4  # report -o, leaderboard --budgets, export --format, list --format
    parser = build_parser()
    rounds = parser._subparsers._group_actions[0].choices["remeasure"]
    assert next(a for a in rounds._actions if "--rounds" in a.option_strings).default is None
    assert "largest of theirs" in doc  # what remeasure's default is, said
