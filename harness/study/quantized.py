"""Deployment targets in int8 (``precision: int8``): each network quantized with its own weights,
its accuracy and size computed from the quantized file (harness.study.targets measures its latency).

Calibration images come from the training split only (harness.data.calibration); the
quantized file's accuracy is computed in the target's runtime beside the same graph in
float32, and a drop on validation above ``deploy.max_drop`` is flagged, never hidden.
A quantizing method's trial (``ptq``, ``qat``) is quantized here at its end with its own
settings, and again, identically, when its targets are measured or it is exported.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import numpy as np
from torch import nn

import methods
from harness.measure.quantize import ir_files, is_ir, quantize_int8, quantize_openvino_int8
from harness.measure.runtimes import Session, onnx_bytes
from harness.networks.deployed import Deployed
from harness.spec.schema import StudySpec, TargetSpec
from harness.study.students import Int8Images, StudyStudents
from methods.study import Distribution


def int8_images(spec: StudySpec, data: Any, count: int | None = None) -> Int8Images | None:
    """The images an int8 target of the study needs (``data``: its DatasetSplits), or None:
    ``count`` calibration images, by default as many as any of its trials or targets uses."""
    if not spec.deploy.int8:
        return None
    from harness.data.calibration import calibration_images

    calibration, index = calibration_images(data, count or calibration_count(spec), spec.dataset.split_seed)
    return Int8Images(calibration, index, (data.val.x.astype(np.float32) / 255, data.val.y),
                      (data.test.x.astype(np.float32) / 255, data.test.y))


def calibration_count(spec: StudySpec) -> int:
    """The most calibration images the study uses: its targets', or a quantizing method's largest
    ``calibration`` (its first images are the same draw's: every count takes a prefix of it)."""
    counts = [spec.deploy.calibration]
    method = methods.METHODS.get(spec.method)
    if method.quantizes:
        value = spec.search.space.get("calibration", method.Params().calibration)
        counts += [int(v) for v in (value.args if isinstance(value, Distribution) else [value])]
    return max(counts)


def trial_quantization(spec: StudySpec, rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Row id -> the settings a quantizing method's trial quantized its network with (its knobs)."""
    method = methods.METHODS.get(spec.method)
    if not method.quantizes:
        return {}

    def knobs(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[f"param_{k}"] for k in method.param_names() if not _missing(row.get(f"param_{k}"))}

    return {row["trial_id"]: method.quantization(method.make_params(knobs(row))) for row in rows}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def quantized_trial(model: nn.Module, settings: dict[str, Any], spec: StudySpec, data: Any) -> dict[str, Any]:
    """A quantizing method's trial figures: its network quantized with ``settings``, its accuracy
    computed in the runtime of the study's first int8 target: these are the trial's val_acc (what
    the search and selection see), test_acc and size_bytes; float32 figures beside them."""
    name, target = next(iter(spec.deploy.int8.items()))
    images = int8_images(spec, data, count=settings["calibration"])
    study = StudyStudents(spec, data.num_classes, data.input_shape, {}, None, int8=images)
    _, figures = quantize_network(Deployed(model.cpu().eval(), data.mean, data.std), study, target, settings)
    return {**figures, "precision": "int8", "quantized_for": name}


def reads_every_checkpoint(spec: StudySpec) -> bool:
    """An int8 target's accuracy depends on each trial's weights, not only its network's shape."""
    return bool(spec.deploy.int8)


def quantize_network(model: nn.Module, study: StudyStudents, target: TargetSpec,
                     settings: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """The network quantized to int8 (with a quantizing trial's ``settings``, else the defaults
    and the study's ``deploy.calibration``), and its figures: accuracy (validation and test,
    int8 and float32 in the same runtime), the drop, the file's size."""
    shape = study.input_shape
    fp32 = onnx_bytes(model, shape)
    int8, calibration = int8_graph(fp32, study.int8.calibration, study.spec, target.runtime, settings)
    quantized, plain = Session(int8, shape, target.runtime, target.threads), Session(fp32, shape, target.runtime,
                                                                                    target.threads)
    figures = {"val_acc": quantized.accuracy(*study.int8.val), "test_acc": quantized.accuracy(*study.int8.test),
               "fp32_val_acc": plain.accuracy(*study.int8.val), "fp32_test_acc": plain.accuracy(*study.int8.test),
               "size_bytes": len(int8), "fp32_size_bytes": len(fp32),
               "calibration_images": calibration}
    figures["accuracy_drop"] = figures["fp32_val_acc"] - figures["val_acc"]
    figures["drop_flagged"] = bool(figures["accuracy_drop"] > study.spec.deploy.max_drop)
    return int8, figures


def int8_graph(graph: bytes, images: np.ndarray, spec: StudySpec, runtime: str,
               settings: dict[str, Any] | None = None) -> tuple[bytes, int]:
    """The float32 graph quantized for ``runtime`` by its own quantizer (harness.measure.quantize)
    with a quantizing trial's ``settings`` (else the defaults and the study's
    ``deploy.calibration``), calibrated on the first of ``images``; and how many. NNCF takes
    ``symmetric`` of the settings; the others are ONNX Runtime's quantizer's."""
    settings = dict(settings or {"calibration": spec.deploy.calibration})
    calibration = images[:settings.pop("calibration")]
    if runtime == "openvino":
        return quantize_openvino_int8(graph, calibration, symmetric=settings.get("symmetric", False)), len(calibration)
    return quantize_int8(graph, calibration, **settings), len(calibration)


def graph_layout(graph: bytes) -> str:
    """An int8 graph's structure without its weights' values: for ONNX its nodes and initializer
    shapes, for OpenVINO IR its .xml (which holds shapes and offsets, the values being in the .bin)."""
    if is_ir(graph):
        return hashlib.sha256(ir_files(graph)[0]).hexdigest()[:16]
    import onnx

    model = onnx.load_from_string(graph)
    layout = [[n.op_type, list(n.input), list(n.output)] for n in model.graph.node]
    layout += [[t.name, list(t.dims), t.data_type] for t in model.graph.initializer]
    return hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]
