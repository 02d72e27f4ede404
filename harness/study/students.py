"""A finished study's completed students, ready to measure (harness.study.remeasure, harness.study.targets)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from harness.spec.schema import StudySpec

Weights = dict[str, torch.Tensor]


@dataclass
class Int8Images:
    """What an int8 target needs besides the networks: the calibration images (training
    split only, with their indices in the source set) and the validation and test images
    its accuracy is computed on; float32 in [0, 1]."""

    calibration: np.ndarray
    calibration_index: np.ndarray
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


@dataclass
class StudyStudents:
    """One study's completed students (row id -> weights) and its teacher, ready to measure."""

    spec: StudySpec
    num_classes: int
    input_shape: tuple[int, ...]
    students: dict[str, Weights]
    teacher_state: Weights | None
    # Row id -> the row whose network it has, by the fingerprint its trial recorded: its
    # weights are not read (a study of a thousand trials of one network reads one checkpoint).
    same_as: dict[str, str] = field(default_factory=dict)
    # The data set's normalisation: deployment targets measure the network with it inside, as exported.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    int8: Int8Images | None = None  # with an int8 deployment target
