from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.batches import DeviceData, augment_batch
from harness.data.datasets import load_splits
from harness.errors import DataError
from tests.torchvision_files import write_cifar10, write_mnist


def _keys(split):
    return set(zip([split.source] * len(split), split.index.tolist(), strict=True))


def test_train_val_test_do_not_overlap_and_cover_the_data(digits):
    train, val, test = _keys(digits.train), _keys(digits.val), _keys(digits.test)
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 1797  # every digit used exactly once
    assert len(val) == round(0.1 * (len(train) + len(val)))


def test_split_is_seeded(digits):
    again = load_splits("digits")
    other = load_splits("digits", split_seed=1)
    assert np.array_equal(again.val.index, digits.val.index)
    assert not np.array_equal(other.val.index, digits.val.index)
    assert np.array_equal(other.test.index, digits.test.index)  # the test split never moves
    assert other.fingerprint != digits.fingerprint


def test_digits_are_mnist_shaped_uint8(digits):
    assert digits.train.x.dtype == np.uint8 and digits.input_shape == (1, 28, 28)
    assert digits.num_classes == 10 and digits.train.x.max() > 200


def test_device_batches_are_normalised_shuffled_and_complete(digits):
    data = DeviceData(digits, torch.device("cpu"))
    assert abs(data.train.x.mean().item()) < 0.3
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([y for _, y in data.train.batches(100, shuffle=True, generator=g)])
    assert len(labels) == len(digits.train)
    assert not torch.equal(labels, data.train.y)
    assert torch.equal(labels.sort().values, data.train.y.sort().values)


def test_batched_crop_and_flip_move_pixels_not_values():
    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).view(4, 3, 8, 8) + 1
    g = torch.Generator().manual_seed(3)
    out = augment_batch(x, "crop_flip", g)
    assert out.shape == x.shape
    for i in range(4):  # every output pixel is an input pixel of the same image or padding
        assert set(out[i].unique().tolist()) <= set(x[i].unique().tolist()) | {0.0}
    crops = [augment_batch(x, "crop", torch.Generator().manual_seed(s)) for s in range(5)]
    assert any(not torch.equal(c, x) for c in crops)


def test_cifar10_loads_through_torchvision_from_files_in_its_format(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar  # noqa: F401

    write_cifar10(tmp_path, n_train=40)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *a, **k: True)  # our files, not the real md5s
    splits = load_splits("cifar10", root=str(tmp_path), download=False, val_fraction=0.25)
    assert splits.input_shape == (3, 32, 32) and splits.augment == "crop_flip"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 10)


def test_mnist_loads_from_idx_files(tmp_path):
    write_mnist(tmp_path, n_train=100, n_test=10)
    splits = load_splits("mnist", root=str(tmp_path), download=False)
    assert (len(splits.train) + len(splits.val), len(splits.test)) == (100, 10)
    assert splits.input_shape == (1, 28, 28)


def test_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataError) as info:
        load_splits("cifar100", root=str(tmp_path / "nowhere"), download=False)
    message = str(info.value)
    assert "cifar100" in message.lower() and "nowhere" in message and "HARNESS_DATA" in message
    assert "\n" not in message


@pytest.mark.parametrize("fraction, part", [(0.999, "training"), (0.001, "validation")])
def test_a_split_too_small_to_hold_each_class_is_refused(fraction, part):
    with pytest.raises(DataError, match=f"leaves [0-9] for the {part} split, fewer than its 10 classes"):
        load_splits("digits", val_fraction=fraction)
