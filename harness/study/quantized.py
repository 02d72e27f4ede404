"""Deployment targets in int8 (``precision: int8``): each network quantized with its own weights,
its accuracy and size computed from the quantized file (harness.study.targets measures its latency).

Calibration images come from the training split only (harness.data.calibration); the
quantized file's accuracy is computed in the target's runtime beside the same graph in
float32, and a drop on validation above ``deploy.max_drop`` is flagged, never hidden.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from torch import nn

from harness.measure.quantize import quantize_int8
from harness.measure.runtimes import Session, onnx_bytes
from harness.spec.schema import StudySpec, TargetSpec
from harness.study.students import Int8Images, StudyStudents


def int8_images(spec: StudySpec, data: Any) -> Int8Images | None:
    """The images an int8 target of the study needs (``data``: its DatasetSplits), or None."""
    if not any(t.precision == "int8" for t in spec.deploy.targets.values()):
        return None
    from harness.data.calibration import calibration_images

    calibration, index = calibration_images(data, spec.deploy.calibration, spec.dataset.split_seed)
    return Int8Images(calibration, index, (data.val.x.astype(np.float32) / 255, data.val.y),
                      (data.test.x.astype(np.float32) / 255, data.test.y))


def reads_every_checkpoint(spec: StudySpec) -> bool:
    """An int8 target's accuracy depends on each trial's weights, not only its network's shape."""
    return any(t.precision == "int8" for t in spec.deploy.targets.values())


def quantize_network(model: nn.Module, study: StudyStudents, target: TargetSpec) -> tuple[bytes, dict[str, Any]]:
    """The network quantized to int8, and its figures: accuracy (validation and test, int8 and
    float32 in the same runtime), the drop, the file's size."""
    shape = study.input_shape
    fp32 = onnx_bytes(model, shape)
    int8 = quantize_int8(fp32, study.int8.calibration)
    quantized, plain = Session(int8, shape, target.runtime, target.threads), Session(fp32, shape, target.runtime,
                                                                                    target.threads)
    figures = {"val_acc": quantized.accuracy(*study.int8.val), "test_acc": quantized.accuracy(*study.int8.test),
               "fp32_val_acc": plain.accuracy(*study.int8.val), "fp32_test_acc": plain.accuracy(*study.int8.test),
               "size_bytes": len(int8), "fp32_size_bytes": len(fp32),
               "calibration_images": len(study.int8.calibration)}
    figures["accuracy_drop"] = figures["fp32_val_acc"] - figures["val_acc"]
    figures["drop_flagged"] = bool(figures["accuracy_drop"] > study.spec.deploy.max_drop)
    return int8, figures


def graph_layout(graph: bytes) -> str:
    """An ONNX graph's structure without its weights' values: nodes and initializer shapes."""
    import onnx

    model = onnx.load_from_string(graph)
    layout = [[n.op_type, list(n.input), list(n.output)] for n in model.graph.node]
    layout += [[t.name, list(t.dims), t.data_type] for t in model.graph.initializer]
    return hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]
