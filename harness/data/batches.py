"""Device-resident batches: the data is normalised and moved to the device once,
then every epoch is a random permutation and slices, with augmentation done on
the whole batch at once (no per-sample Python transforms)."""
from __future__ import annotations

import warnings
from typing import Iterator

import torch
import torch.nn.functional as F

from harness.data.datasets import DatasetSplits, Split

Batch = tuple[torch.Tensor, torch.Tensor]


class DeviceSplit:
    """One split on a device, as normalised float images and int64 labels."""

    def __init__(self, split: Split, mean, std, device: torch.device, augment: str = "none") -> None:
        with warnings.catch_warnings():  # arrays from Ray's object store are read-only
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(split.x)
            y = torch.from_numpy(split.y)
        mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.x = (x.to(device).float().div_(255) - mean_t) / std_t
        self.y = y.to(device)
        self.augment = augment
        self.device = device

    def __len__(self) -> int:
        return len(self.y)

    def batches(
        self, batch_size: int, shuffle: bool = False, augment: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        n = len(self.y)
        order = torch.randperm(n, device=self.device, generator=generator) if shuffle else None
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield self.take(index, augment, generator)

    def take(self, index: torch.Tensor | slice, augment: bool = False,
             generator: torch.Generator | None = None) -> Batch:
        x = self.x[index]
        if augment and self.augment != "none":
            x = augment_batch(x, self.augment, generator)
        return x, self.y[index]


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random 4-pixel-padded crop (and horizontal flip for ``crop_flip``) of a whole batch."""
    n, c, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device, generator=generator)
    rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    out = padded.gather(2, rows).gather(3, cols)
    if kind == "crop_flip":
        flip = torch.rand(n, device=x.device, generator=generator) < 0.5
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)
    return out


class DeviceData:
    """The splits a trial may use, on its device."""

    def __init__(self, splits: DatasetSplits, device: torch.device, parts=("train", "val", "test")) -> None:
        self.num_classes = splits.num_classes
        self.input_shape = splits.input_shape
        self.mean, self.std = splits.mean, splits.std
        self.device = device
        self._parts = {
            part: DeviceSplit(getattr(splits, part), splits.mean, splits.std, device,
                              splits.augment if part == "train" else "none")
            for part in parts
        }

    def __getattr__(self, part: str) -> DeviceSplit:
        try:
            return self.__dict__["_parts"][part]
        except KeyError:
            raise AttributeError(part) from None
