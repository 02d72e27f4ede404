"""A user's own loader, named by import path: tensors or torch Datasets in, the harness's
splits out, with the same validation carve-out and data-free guarantee."""
from __future__ import annotations

import pytest

from harness.data.datasets import load_dataset
from harness.errors import HarnessError
from harness.study.sweep import trial_splits
from tests.support.specs import small_spec

LOADERS = '''
import torch
from torch.utils.data import TensorDataset

g = torch.Generator().manual_seed(0)


def tensors(root):
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8, generator=g)
    return (images[:40], torch.arange(40) % 4), (images[40:], torch.arange(10) % 4)


def datasets(root):
    images = torch.rand(30, 3, 16, 16, generator=g)  # floats in [0, 1]
    labels = torch.arange(30) % 3
    return TensorDataset(images[:24], labels[:24]), TensorDataset(images[24:], labels[24:])


def one_split(root):
    return tensors(root)[0]


def raises(root):
    raise FileNotFoundError(f"nothing in {root}")
'''


@pytest.fixture
def loaders(tmp_path, monkeypatch):
    folder = tmp_path / "userdata"
    folder.mkdir()
    (folder / "loaders.py").write_text(LOADERS)
    return folder


def _spec(loaders, name, **changes):
    return small_spec(**{"code": f"[{loaders}]", "dataset.name": f"userdata.loaders:{name}",
                         "dataset.val_fraction": "0.25", **changes})


def test_tensors_from_a_user_loader_become_the_splits(loaders):
    data = load_dataset(_spec(loaders, "tensors").dataset)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 10)
    assert data.num_classes == 4 and data.input_shape == (1, 28, 28) and data.train.x.dtype.name == "uint8"


def test_a_torch_dataset_of_floats_becomes_uint8_splits_and_data_free_trials_get_none(loaders):
    spec = _spec(loaders, "datasets")
    data = load_dataset(spec.dataset)
    assert data.input_shape == (3, 16, 16) and data.num_classes == 3 and data.train.x.max() > 200
    dafl = _spec(loaders, "datasets", **{"method": "dafl", "search.space": "{}",
                                         "search.space.lr_student": "{loguniform: [0.001, 0.01]}"})
    assert len(trial_splits(dafl, data).train) == 0


@pytest.mark.parametrize("name, message", [
    ("raises", r"raised FileNotFoundError: nothing in "),
    ("one_split", r"must return \(train, test\)"),
    ("missing", r"'userdata.loaders' has no function 'missing'"),
])
def test_a_user_loader_that_fails_is_one_line(loaders, name, message):
    with pytest.raises(HarnessError, match=message) as caught:
        load_dataset(_spec(loaders, name).dataset)
    assert "\n" not in str(caught.value)
