"""INT8 post-training static quantization, each runtime with its own quantizer.

The float32 ONNX graph (as ``harness export --format onnx`` writes it, normalisation
inside) is quantized, its ranges calibrated on the images given (drawn from the training
split only: harness.data.calibration):

- for ``onnxruntime``, by ONNX Runtime's static quantizer (:func:`quantize_int8`): the graph
  pre-processed (shape inference, folding), then in QDQ form, weights int8 (per output
  channel by default), activations uint8 with a zero point (or int8 symmetric), ranges by
  min-max (the default), entropy or a percentile;
- for ``openvino``, by NNCF, OpenVINO's own (:func:`quantize_openvino_int8`): the graph
  read by OpenVINO and quantized with NNCF's defaults (int8 weights per output channel,
  activation ranges from the calibration images; ``symmetric`` picks its performance preset,
  else its mixed one), kept as OpenVINO IR (an ``.xml`` and a ``.bin``, packed here in one
  zip, :func:`ir_files`).

``torch.ao.quantization``'s PT2E entry points are gone from torch 2.15; torchao's X86
quantizer is not used (docs/protocol.md says why), so the ``torch`` runtimes have no int8 path.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def equal_batches(images: np.ndarray, largest: int) -> list[np.ndarray]:
    """``images`` in batches of one size, the largest up to ``largest`` that divides their number:
    the calibrators stack the batches' outputs, so a smaller last batch would break them."""
    size = max(s for s in range(1, largest + 1) if len(images) % s == 0)
    return [images[i:i + size] for i in range(0, len(images), size)]


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

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": images} for images in equal_batches(calibration, batch)])

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


IR_FILES = ("model.xml", "model.bin")


def quantize_openvino_int8(graph: bytes, calibration: np.ndarray, batch: int = 32, symmetric: bool = False) -> bytes:
    """The ONNX graph quantized by NNCF for OpenVINO, calibrated on every image of
    ``calibration``; OpenVINO IR packed in one zip (:func:`ir_files` unpacks it)."""
    import nncf
    import openvino as ov

    batches = equal_batches(calibration, batch)
    preset = nncf.QuantizationPreset.PERFORMANCE if symmetric else nncf.QuantizationPreset.MIXED
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress bars
        model = nncf.quantize(ov.Core().read_model(graph), nncf.Dataset(batches), preset=preset,
                              subset_size=len(batches))
    with tempfile.TemporaryDirectory(prefix="int8") as folder:
        ov.save_model(model, str(Path(folder) / IR_FILES[0]), compress_to_fp16=False)
        return network_file(Path(folder) / IR_FILES[0])


def network_file(path: Path) -> bytes:
    """A network file's bytes as the runtimes take them: an ONNX file's own, or an OpenVINO IR
    ``.xml`` packed with its ``.bin`` beside it."""
    if path.suffix != ".xml":
        return path.read_bytes()
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for name, part in zip(IR_FILES, (path, path.with_suffix(".bin")), strict=True):
            archive.write(part, name)
    return packed.getvalue()


def is_ir(model: bytes) -> bool:
    """Packed OpenVINO IR (a zip), rather than an ONNX graph."""
    return model[:2] == b"PK"


def ir_files(model: bytes) -> tuple[bytes, bytes]:
    """Packed OpenVINO IR's ``.xml`` and ``.bin``."""
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        return archive.read(IR_FILES[0]), archive.read(IR_FILES[1])
