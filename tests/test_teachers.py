from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from harness.errors import CheckpointError
from harness.networks.zoo import create_model
from harness.study.teachers import cache_key, obtain_teacher, train_teacher
from tests.support.specs import small_spec


class CountingTrainer:
    def __init__(self):
        self.calls = 0

    def __call__(self, spec, data):
        self.calls += 1
        return train_teacher(spec, data)


def test_teacher_is_trained_once_and_reused_from_the_cache(tmp_path, digits, capsys):
    spec = small_spec()
    trainer = CountingTrainer()
    first = obtain_teacher(spec, digits, tmp_path, train=trainer)
    # each epoch but the last, whose figures the sweep's summary line gives
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": val_acc")[0] for line in lines] == ["  teacher lenet5_half epoch 1/2"]
    second = obtain_teacher(small_spec(study="another-study"), digits, tmp_path, train=trainer)
    assert trainer.calls == 1
    assert (first.metrics["source"], second.metrics["source"]) == ("trained", "cache")
    assert second.metrics["test_acc"] == first.metrics["test_acc"]
    assert all(torch.equal(first.state[k], second.state[k]) for k in first.state)
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 1


def test_cache_key_changes_with_recipe_seed_architecture_and_split(digits):
    from harness.data.datasets import load_splits

    base = cache_key(small_spec(), digits)
    assert cache_key(small_spec(**{"teacher.recipe.lr": "0.01"}), digits) != base
    assert cache_key(small_spec(**{"teacher.seed": "1"}), digits) != base
    assert cache_key(small_spec(**{"teacher.model": "lenet5"}), digits) != base
    assert cache_key(small_spec(), load_splits("digits", split_seed=3)) != base
    # explicit defaults and study-level fields do not split the cache
    assert cache_key(small_spec(**{"teacher.recipe.momentum": "0.9", "study": "x"}), digits) == base


def test_checkpoint_round_trip_and_mismatch(tmp_path, digits):
    model = create_model("lenet5_half", 10)
    good = tmp_path / "good.pt"
    torch.save(model.state_dict(), good)
    teacher = obtain_teacher(small_spec(**{"teacher.checkpoint": str(good)}), digits, tmp_path)
    assert teacher.metrics["source"] == "checkpoint" and 0 <= teacher.metrics["test_acc"] <= 1
    # Measured like a teacher trained here, so that the leaderboard's size budgets apply.
    assert teacher.metrics["params"] == sum(p.numel() for p in model.parameters())
    assert teacher.metrics["size_bytes"] > 0 and teacher.metrics["macs"] > 0 and teacher.metrics["latency_ms"] > 0

    wrong = tmp_path / "wrong.pt"
    torch.save(create_model("lenet5", 10).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="does not fit: feature_extractor.0.weight has shape"):
        obtain_teacher(small_spec(**{"teacher.checkpoint": str(wrong)}), digits, tmp_path)

    other = tmp_path / "other.pt"
    partial = dict(model.state_dict())
    partial.pop("head.3.bias")
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, other)
    with pytest.raises(CheckpointError, match="does not fit lenet5_half .*missing .*unexpected"):
        obtain_teacher(small_spec(**{"teacher.checkpoint": str(other)}), digits, tmp_path)


class Exploit:
    """Unpickled, it writes a file: the proof that loading ran code."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.write_text, (self.sentinel, "code ran while loading"))


def test_checkpoint_that_runs_code_is_refused_and_its_code_never_runs(tmp_path, digits):
    evil, sentinel = tmp_path / "evil.pt", tmp_path / "ran"
    with open(evil, "wb") as f:
        pickle.dump({"weight": Exploit(sentinel)}, f, protocol=2)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        obtain_teacher(small_spec(**{"teacher.checkpoint": str(evil)}), digits, tmp_path)
    assert not sentinel.exists()
    with open(evil, "rb") as f:  # the payload is real: an unsafe load runs it
        pickle.load(f)
    assert sentinel.read_text() == "code ran while loading"


@pytest.mark.parametrize("write, cause", [
    (lambda path: torch.save(torch.nn.Linear(3, 3), path),
     "cannot be loaded safely: it holds more than tensors (torch.nn.modules.linear.Linear)"),
    (lambda path: path.write_text("not a checkpoint"), "is not a PyTorch checkpoint"),
    (lambda path: path.write_bytes(b""), "is not a PyTorch checkpoint"),
    (lambda path: torch.save({"head.3.bias": 3}, path), "is not a state_dict: 'head.3.bias' holds 3, not a tensor"),
])
def test_unloadable_checkpoints_say_why_in_one_line(tmp_path, digits, write, cause):
    path = tmp_path / "teacher.pt"
    write(path)
    with pytest.raises(CheckpointError) as info:
        obtain_teacher(small_spec(**{"teacher.checkpoint": str(path)}), digits, tmp_path)
    assert cause in str(info.value) and "\n" not in str(info.value) and "\x1b" not in str(info.value)
