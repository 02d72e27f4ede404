"""The images that calibrate a quantized network: from the training split only.

Validation and test images are never among them (the validation split selects, the
test split reports), so an INT8 figure follows the same protocol as every other.
The draw is seeded by the split seed: every trial's network is calibrated on the same
images.
"""
from __future__ import annotations

import numpy as np

from harness.data.datasets import DatasetSplits


def calibration_images(data: DatasetSplits, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` training images as float32 in [0, 1], and their indices in the source set."""
    order = np.random.default_rng(seed).permutation(len(data.train.x))[:count]
    return data.train.x[order].astype(np.float32) / 255, data.train.index[order]
