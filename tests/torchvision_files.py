"""Small data sets written in torchvision's own on-disk formats (no download), for tests and benchmarks."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_mnist(root: Path, n_train: int, n_test: int = 10) -> None:
    """Random images and labels as ``<root>/MNIST/raw/*-ubyte`` (IDX files)."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        for kind, array, magic in (("images-idx3", rng.integers(0, 256, (count, 28, 28)), 2051),
                                   ("labels-idx1", rng.integers(0, 10, count), 2049)):
            header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())


def write_cifar10(root: Path, n_train: int, n_test: int = 10) -> None:
    """Random images as ``<root>/cifar-10-batches-py`` pickles: five training batches
    (``ceil(n_train / 5)`` images each) and a test batch. torchvision checks the published
    md5 sums of these files: patch ``torchvision.datasets.cifar.check_integrity`` to read them."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, count in [*[(f"data_batch_{i}", -(-n_train // 5)) for i in range(1, 6)], ("test_batch", n_test)]:
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, count).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def write_image_folder(root: Path, classes: int = 3, per_class: tuple[int, int] = (12, 4), size: int = 12,
                       mode: str = "RGB") -> np.ndarray:
    """PNG files in ImageFolder's layout, ``<root>/{train,test}/class<k>/<i>.png``, each class a
    different mean colour so that a network can learn them; returns the first training image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    first = None
    for part, count in zip(("train", "test"), per_class, strict=True):
        for k in range(classes):
            folder = Path(root) / part / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(rng.normal(60 + 60 * k, 30, (size, size, channels)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(folder / f"{i}.png")
                first = pixels if first is None else first
    return first
