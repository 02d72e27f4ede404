"""INT8 post-training static quantization of an ONNX graph, with ONNX Runtime's quantizer.

The graph (as ``harness export --format onnx`` writes it, normalisation inside) is
pre-processed (shape inference, folding), then quantized in QDQ form: weights int8 per
output channel, activations uint8 with ranges from min-max calibration on the images
given (drawn from the training split only: harness.data.calibration). QDQ graphs run as
integer kernels in ONNX Runtime's CPU provider (VNNI where the CPU has it) and in
OpenVINO, which reads the same file. ``torch.ao.quantization``'s PT2E entry points are
gone from torch 2.15; torchao's X86 quantizer is not used here yet, so the ``torch``
runtimes have no int8 path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def quantize_int8(graph: bytes, calibration: np.ndarray, batch: int = 32) -> bytes:
    """The graph quantized to INT8 (QDQ), calibrated on ``calibration``: float32 images in [0, 1]."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": calibration[i:i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="int8") as folder:
        fp32, prepared, int8 = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(graph)
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(str(prepared), str(int8), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return int8.read_bytes()
