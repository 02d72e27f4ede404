"""A finished study's completed students, ready to measure (harness.study.remeasure, harness.study.targets)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.spec.schema import StudySpec
from harness.store.location import Location

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
    # Row id -> how a quantizing method's trial quantized its network (Method.quantization's settings).
    quantization: dict[str, dict[str, Any]] = field(default_factory=dict)


def trial_student(study: Location, row: Any) -> Weights:
    """A completed trial's final student weights (at its own, possibly pruned, shapes), read
    from the checkpoint its row names, without running any code."""
    if not isinstance(row.get("student_state"), str):
        raise HarnessError(f"trial {row['trial_id']}: trials.parquet names no student_state (a study written "
                           f"before export existed); run it again to export it")
    if not study.exists(row["student_state"]):
        raise HarnessError(f"trial {row['trial_id']}: its checkpoint {study.uri_of(row['student_state'])} is gone")
    saved = torch.load(io.BytesIO(study.read_bytes(row["student_state"])), map_location="cpu", weights_only=True)
    if saved.get("trial_id", row["trial_id"]) != row["trial_id"]:  # checkpoints written before the id: unchecked
        raise HarnessError(f"trial {row['trial_id']}: its row names {study.uri_of(row['student_state'])}, which "
                           f"holds trial {saved['trial_id']}'s student; the row and the checkpoint do not belong "
                           f"together")
    return saved["method"]["student"]
