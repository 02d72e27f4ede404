"""INT8 post-training static quantization of an ONNX graph, with ONNX Runtime's quantizer.

The graph (as ``harness export --format onnx`` writes it, normalisation inside) is
pre-processed (shape inference, folding), then quantized in QDQ form: weights int8 (per
output channel by default), activations uint8 with a zero point (or int8 symmetric), their
ranges calibrated on the images given (drawn from the training split only:
harness.data.calibration) by min-max (the default), entropy or a percentile. QDQ graphs run as
integer kernels in ONNX Runtime's CPU provider (VNNI where the CPU has it) and in
OpenVINO, which reads the same file. ``torch.ao.quantization``'s PT2E entry points are
gone from torch 2.15; torchao's X86 quantizer is not used here yet, so the ``torch``
runtimes have no int8 path.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

CALIBRATIONS = ("minmax", "entropy", "percentile")


def quantize_int8(graph: bytes, calibration: np.ndarray, batch: int = 32, per_channel: bool = True,
                  symmetric: bool = False, calibrate: str = "minmax", percentile: float = 99.999) -> bytes:
    """The graph quantized to INT8 (QDQ), calibrated on ``calibration``: float32 images in [0, 1]."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # The calibrators stack their batches' outputs: every batch must have the same size.
    batch = max(size for size in range(1, batch + 1) if len(calibration) % size == 0)

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": calibration[i:i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    # Entropy and percentile calibration print their progress: kept off the study's output.
    with tempfile.TemporaryDirectory(prefix="int8") as folder, contextlib.redirect_stdout(io.StringIO()):
        fp32, prepared, int8 = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(graph)
        quant_pre_process(str(fp32), str(prepared))
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[calibrate]
        quantize_static(str(prepared), str(int8), Images(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        extra_options={"ActivationSymmetric": symmetric, "CalibPercentile": percentile})
        return int8.read_bytes()
