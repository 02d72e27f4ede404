"""Datasets: one registry, one in-memory format, seeded train/validation/test splits.

A loader returns uint8 images in NCHW layout with integer labels. ``load_splits``
carves the validation split from the training data with its own seed, so that
search and early stopping never see the test split. The result is plain NumPy,
cheap to put once in Ray's object store and share with every trial.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.errors import DataError, DataMissing, SpecError
from methods.registry import Registry, import_function


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x C x H x W), labels (int64) and their indices in ``source``."""

    x: np.ndarray
    y: np.ndarray
    source: str  # the loader's split the samples come from: "train", "test" or "all"
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class RawDataset:
    """What a loader returns: the data set's own train and test splits."""

    train: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # default batch augmentation: "none", "crop" or "crop_flip"


@dataclass(frozen=True)
class DatasetSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    fingerprint: str  # identifies the exact samples in each split (teacher cache key)
    substitute: Split | None = None  # another data set's images, for substitute-data baselines

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.test.x.shape[1:])  # type: ignore[return-value]

    def without_training_images(self) -> "DatasetSplits":
        """The splits as a data-free trial receives them: the training images are gone.

        Validation and test stay: the harness (never the method) evaluates on them.
        """
        empty = Split(self.train.x[:0], self.train.y[:0], self.train.source, self.train.index[:0])
        return replace(self, train=empty)


def split_indices(data: DatasetSplits) -> str:
    """Which images each split holds, as JSON: for each, the loader's split the images come
    from ("train", "test", or "all" for a set without its own test split) and their indices
    there, so that a teacher trained elsewhere can be kept off the validation and test images."""
    parts = {name: {"source": split.source, "count": len(split), "index": split.index.tolist()}
             for name, split in (("train", data.train), ("validation", data.val), ("test", data.test))}
    return json.dumps({"dataset": data.name, "fingerprint": data.fingerprint, **parts})


Loader = Callable[..., RawDataset]  # (root, download, **its own options)
DATASETS: Registry[Loader] = Registry("dataset")
AUGMENTATIONS = ("none", "crop", "crop_flip")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    return DATASETS.register(name)


def data_root(root: str | None) -> Path:
    """The spec's root, else $HARNESS_DATA, else ./data."""
    return Path(root or os.environ.get("HARNESS_DATA") or "data").expanduser()


def dataset_loader(name: str, field: str) -> Loader:
    """A registered data set, or a user's loader named ``package.module:function``."""
    if ":" not in name:
        return DATASETS.get(name, field=field)
    user_loader = import_function(name, field, SpecError)

    def load(root: Path, download: bool) -> RawDataset:
        try:
            train, test = user_loader(root=root)
        except Exception as exc:
            raise DataError(f"{field}: {name}(root='{root}') raised {type(exc).__name__}: {exc}") from None
        train, test = _user_split(train, "train", name), _user_split(test, "test", name)
        classes = int(max(train.y.max(), test.y.max())) + 1
        return RawDataset(train=train, test=test, num_classes=classes, **own_statistics(train), augment="none")

    return load


def own_statistics(train: Split) -> dict[str, tuple[float, ...]]:
    """Per-channel mean and standard deviation of the training images (in [0, 1]): the
    normalisation of a data set the harness has no published figures for."""
    x = train.x.astype(np.float64) / 255
    return {"mean": tuple(round(float(v), 4) for v in x.mean(axis=(0, 2, 3))),
            "std": tuple(round(float(v), 4) for v in x.std(axis=(0, 2, 3)))}


def _user_split(part: Any, source: str, name: str) -> Split:
    """A user loader's split, ``(images, labels)`` or a Dataset of ``(image, label)``: images
    (N, C, H, W) or (C, H, W), uint8, or floats in [0, 1]."""
    import torch

    if isinstance(part, torch.utils.data.Dataset):
        pairs = [part[i] for i in range(len(part))]
        part = (torch.stack([torch.as_tensor(image) for image, _ in pairs]), [int(label) for _, label in pairs])
    if not (isinstance(part, (tuple, list)) and len(part) == 2):
        raise DataError(f"dataset.name: {name} must return (train, test), each (images, labels) or a torch "
                        f"Dataset; its {source} split is {type(part).__name__}")
    images, labels = (np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in part)
    if images.ndim != 4 or len(images) != len(labels):
        raise DataError(f"dataset.name: {name}'s {source} images have shape {images.shape} for {len(labels)} "
                        f"labels; expected (N, C, H, W) and N labels")
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 1:
            raise DataError(f"dataset.name: {name}'s {source} images are {images.dtype} outside [0, 1]; "
                            f"give uint8 pixels or floats in [0, 1]")
        images = (images * 255).round().astype(np.uint8)
    return _split(images, labels.astype(np.int64), source)


def loader_options(name: str) -> set[str]:
    """The options (``dataset.<option>`` in a spec) that a loader takes beyond root and download."""
    parameters = inspect.signature(dataset_loader(name, "dataset.name")).parameters
    return set(parameters) - {"root", "download"}


def load_splits(
    name: str,
    root: str | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = True,
    augment: str | None = None,
    options: dict[str, Any] | None = None,
) -> DatasetSplits:
    """``options``: the loader's own (``loader_options``), e.g. an image folder's image size."""
    options = options or {}
    raw = dataset_loader(name, "dataset.name")(data_root(root), download, **options)
    n = len(raw.train)
    order = np.random.default_rng(split_seed).permutation(n)
    n_val = int(round(n * val_fraction))
    for part, size in (("validation", n_val), ("training", n - n_val)):
        if size < raw.num_classes:  # cannot hold one image per class: every figure would be noise
            raise DataError(f"dataset.val_fraction: {val_fraction:g} of {name}'s {n} training images leaves "
                            f"{size} for the {part} split, fewer than its {raw.num_classes} classes")
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    train, val = _subset(raw.train, train_idx), _subset(raw.train, val_idx)
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode() if options else b"")
    for part in (train, val, raw.test):
        digest.update(part.source.encode())
        digest.update(np.ascontiguousarray(part.index).tobytes())
        digest.update(np.ascontiguousarray(part.y).tobytes())
    return DatasetSplits(
        name=name, train=train, val=val, test=raw.test, num_classes=raw.num_classes,
        mean=raw.mean, std=raw.std, augment=augment or raw.augment,
        fingerprint=f"{name}-{digest.hexdigest()[:16]}",
    )


def load_dataset(dataset: Any, download: bool | None = None) -> DatasetSplits:
    """The splits a spec's ``dataset`` section describes (``download`` overrides its own)."""
    d = dataset
    return load_splits(d.name, d.root, d.val_fraction, d.split_seed, d.download if download is None else download,
                       d.augment, d.options())


def load_substitute(name: str, root: str | None, download: bool,
                    input_shape: tuple[int, int, int]) -> Split:
    """Another data set's training images resized to ``input_shape``: a substitute
    for the real training data (the DAFL paper's USPS row). Labels are kept but
    a method distilling on them never needs them."""
    import torch
    import torch.nn.functional as F

    raw = dataset_loader(name, "dataset.substitute")(data_root(root), download)
    channels, height, width = input_shape
    x = torch.from_numpy(raw.train.x).float()
    if x.shape[2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    if x.shape[1] != channels:  # grey <-> colour
        if {x.shape[1], channels} != {1, 3}:
            raise DataError(f"dataset.substitute: cannot turn {name}'s {x.shape[1]}-channel "
                            f"images into {channels}-channel ones")
        x = x.mean(1, keepdim=True).expand(-1, channels, -1, -1)
    x = x.clamp(0, 255).round().to(torch.uint8).numpy()
    return Split(np.ascontiguousarray(x), raw.train.y, f"{name}:{raw.train.source}", raw.train.index)


def _subset(split: Split, idx: np.ndarray) -> Split:
    return Split(split.x[idx], split.y[idx], split.source, split.index[idx])


def _split(x: np.ndarray, y: np.ndarray, source: str, index: np.ndarray | None = None) -> Split:
    x = np.ascontiguousarray(x, dtype=np.uint8)
    if x.ndim == 3:
        x = x[:, None]
    index = np.arange(len(y)) if index is None else index
    return Split(x, np.asarray(y, dtype=np.int64), source, index)


# --- the embedded default -------------------------------------------------------

@register_dataset("digits")
def load_digits(root: Path, download: bool) -> RawDataset:
    """scikit-learn's bundled 8x8 digits, upsampled to 28x28 so MNIST models fit.

    The set has no official test split: a fixed 20% (seed 0, independent of the
    study) is held out as test, the same on every machine.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).float()[:, None] / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    x = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    y = bunch.target
    order = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 5
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    return RawDataset(
        train=_split(x[train_idx], y[train_idx], "all", train_idx),
        test=_split(x[test_idx], y[test_idx], "all", test_idx),
        num_classes=10, mean=(0.305,), std=(0.325,), augment="none",
    )


# --- torchvision data sets ----------------------------------------------------------

def _torchvision(name: str, root: Path, download: bool, **kwargs):
    import torchvision.datasets as tvd

    try:
        return getattr(tvd, name)(root=str(root), download=download, **kwargs)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
        how = "and the download failed" if download else "and dataset.download is false"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataMissing(
            f"dataset {name}: no usable files under '{root}' {how} ({reason}); "
            f"put the data there or set dataset.root / HARNESS_DATA to the folder that holds it"
        ) from None


def _grey(name: str, mean: float, std: float) -> Loader:
    def load(root: Path, download: bool) -> RawDataset:
        train = _torchvision(name, root, download, train=True)
        test = _torchvision(name, root, download, train=False)
        return RawDataset(
            train=_split(train.data.numpy(), train.targets.numpy(), "train"),
            test=_split(test.data.numpy(), test.targets.numpy(), "test"),
            num_classes=len(train.classes), mean=(mean,), std=(std,), augment="none",
        )

    return load


register_dataset("mnist")(_grey("MNIST", 0.1307, 0.3081))
register_dataset("fashion_mnist")(_grey("FashionMNIST", 0.2860, 0.3530))


def _cifar(name: str, num_classes: int, mean, std) -> Loader:
    def load(root: Path, download: bool) -> RawDataset:
        train = _torchvision(name, root, download, train=True)
        test = _torchvision(name, root, download, train=False)
        return RawDataset(
            train=_split(train.data.transpose(0, 3, 1, 2), train.targets, "train"),
            test=_split(test.data.transpose(0, 3, 1, 2), test.targets, "test"),
            num_classes=num_classes, mean=mean, std=std, augment="crop_flip",
        )

    return load


register_dataset("cifar10")(_cifar("CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
register_dataset("cifar100")(_cifar("CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))


@register_dataset("svhn")
def load_svhn(root: Path, download: bool) -> RawDataset:
    """SVHN's train and test splits (no 'extra'); crops only: flipped digits change meaning."""
    train = _torchvision("SVHN", root, download, split="train")
    test = _torchvision("SVHN", root, download, split="test")
    return RawDataset(
        train=_split(train.data, train.labels, "train"),
        test=_split(test.data, test.labels, "test"),
        num_classes=10, mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment="crop",
    )


@register_dataset("usps")
def load_usps(root: Path, download: bool) -> RawDataset:
    """USPS handwritten digits (16x16), from ``<root>/USPS/usps.bz2`` and ``usps.t.bz2``.

    The DAFL paper's substitute data for MNIST; as a substitute it is resized to
    the target's image size (``load_substitute``).
    """
    train = _torchvision("USPS", root / "USPS", download, train=True)
    test = _torchvision("USPS", root / "USPS", download, train=False)
    return RawDataset(
        train=_split(train.data, train.targets, "train"),
        test=_split(test.data, test.targets, "test"),
        num_classes=10, mean=(0.2469,), std=(0.2989,), augment="none",
    )


# --- a folder of the user's images ---------------------------------------------------

@register_dataset("imagefolder")
def load_image_folder(root: Path, download: bool, train: str = "train", test: str = "test",
                      image_size: int | None = None, memory_gb: float = 4.0) -> RawDataset:
    """torchvision's ImageFolder layout: ``<root>/<train>/<class>/*.png`` and the same
    under ``<test>``, the classes named by the training folder's subfolders.

    Decoded once into uint8 tensors (resized to ``image_size`` squares where given),
    so trials batch and augment on the device as with every other data set. Colour
    images stay RGB; a folder of greyscale images is one channel. Mean and standard
    deviation are the training images' own.
    """
    from torchvision.datasets import ImageFolder

    folders = {}
    for part, name in (("train", train), ("test", test)):
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"dataset: image folder '{folder}' does not exist (dataset.root holds the "
                              f"{part} folder, dataset.{part} names it; ImageFolder layout: {name}/<class>/<image>)")
        folders[part] = ImageFolder(str(folder))
    classes = folders["train"].classes
    if folders["test"].classes != classes:
        raise DataError(f"dataset: the classes of '{root / test}' ({', '.join(folders['test'].classes)}) are not "
                        f"those of '{root / train}' ({', '.join(classes)})")
    from PIL import Image

    with Image.open(folders["train"].samples[0][0]) as first:  # ImageFolder's own loader makes every image RGB
        channels = 1 if first.mode in ("L", "I", "I;16", "1") else 3
    height, width = (image_size, image_size) if image_size else (first.height, first.width)
    images = sum(len(f) for f in folders.values())
    size_gb = images * channels * height * width / 1e9
    if size_gb > memory_gb:
        raise DataError(f"dataset: {images:,} images of {channels}x{height}x{width} take {size_gb:.1f} GB decoded, "
                        f"more than dataset.memory_gb ({memory_gb:g}); set dataset.image_size smaller, or "
                        f"dataset.memory_gb larger if this machine and every worker have the memory")
    splits = {part: _decode(folder, channels, (height, width), image_size is not None, part)
              for part, folder in folders.items()}
    return RawDataset(train=splits["train"], test=splits["test"], num_classes=len(classes),
                      **own_statistics(splits["train"]), augment="none")


def _decode(folder: Any, channels: int, size: tuple[int, int], resize: bool, part: str) -> Split:
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(folder), channels, *size), dtype=np.uint8)
    for i, (path, _) in enumerate(folder.samples):
        with Image.open(path) as opened:
            image = opened.convert(mode)
        if resize:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        elif (image.height, image.width) != size:
            raise DataError(f"dataset: '{path}' is {image.width}x{image.height}, the first image "
                            f"{size[1]}x{size[0]}; set dataset.image_size to resize them all")
        pixels = np.asarray(image, dtype=np.uint8)
        x[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return _split(x, np.asarray(folder.targets), part)
