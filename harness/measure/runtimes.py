"""The runtimes a network is deployed in, each set up and timed as a deployment runs it.

Runtimes reorder costs: a network that is fast in eager PyTorch can be slow in ONNX
Runtime and the other way round (benchmarks/README.md, "One network in every runtime"),
so a latency is measured in the runtime it is quoted for, never converted.

- ``torch``: eager PyTorch in inference mode; threads by ``torch.set_num_threads``.
- ``torch_compile``: ``torch.compile`` (Inductor), compiled before timing; threads likewise.
- ``onnxruntime``: the network exported to ONNX with a dynamic batch, as ``harness export``
  writes it, on the CPU execution provider; ``intra_op_num_threads``, one inter-op thread.
- ``openvino``: the same ONNX graph compiled by OpenVINO for the CPU (``pip install
  openvino``), held to float32 (``INFERENCE_PRECISION_HINT``: its CPU default may be
  lower where the processor has bf16); ``INFERENCE_NUM_THREADS``.

A :class:`Session` holds one network ready in one runtime at one thread count; its
:meth:`Session.latency_ms` times a batch the way ``harness.measure.cost.latency_ms``
times eager PyTorch (warm-up, then the median of timed runs, each long enough for the
timer). ONNX and OpenVINO take float32 NumPy batches, PyTorch a tensor on the CPU.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from harness.measure.cost import time_calls
from harness.measure.quantize import ir_files, is_ir

RUNTIMES = ("torch", "torch_compile", "onnxruntime", "openvino")
_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


class RuntimeUnavailable(Exception):
    """A runtime that cannot run here, or cannot run this network: one line saying why."""


def missing(runtime: str) -> str | None:
    """Why ``runtime`` cannot run on this machine (unknown, or its package not installed), else None."""
    if runtime not in RUNTIMES:
        return f"unknown runtime '{runtime}' (known: {', '.join(RUNTIMES)})"
    package = _PACKAGES.get(runtime)
    if package and importlib.util.find_spec(package) is None:
        return f"runtime '{runtime}' needs the {package} package, which is not installed here (pip install {package})"
    return None


def installed() -> list[str]:
    """The runtimes this machine can run."""
    return [r for r in RUNTIMES if missing(r) is None]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op threads for the block, then what they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """The network as an ONNX graph with a dynamic batch (input ``images``, output ``logits``)."""
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():  # the exporter prints its steps
        program = torch.onnx.export(copy.deepcopy(model).eval().cpu(), (example,), None, dynamic_shapes=({0: batch},),
                                    external_data=False, input_names=["images"], output_names=["logits"])
    return program.model_proto.SerializeToString()


class Session:
    """One network ready to run in one runtime, at one thread count, on this machine's CPU."""

    def __init__(self, model: nn.Module | bytes, input_shape: tuple[int, ...], runtime: str, threads: int) -> None:
        """``model``: a network, or for ``onnxruntime`` and ``openvino`` an ONNX graph's bytes
        (an exported file, timed as it is), or for ``openvino`` packed IR (harness.measure.quantize)."""
        if (why := missing(runtime)) is not None:
            raise RuntimeUnavailable(why)
        if threads < 1:
            raise RuntimeUnavailable(f"threads: must be at least 1, got {threads}")
        if isinstance(model, bytes) and runtime not in ("onnxruntime", "openvino"):
            raise RuntimeUnavailable(f"runtime '{runtime}' runs a network, not an ONNX graph")
        if isinstance(model, bytes) and is_ir(model) and runtime != "openvino":
            raise RuntimeUnavailable(f"runtime '{runtime}' cannot run OpenVINO IR")
        self.runtime, self.threads, self.input_shape = runtime, threads, tuple(input_shape)
        self._run = self._prepare(model if isinstance(model, bytes) else model.eval().cpu())

    def _prepare(self, model: nn.Module | bytes) -> Callable[[Any], Any]:
        if self.runtime in ("torch", "torch_compile"):
            net = torch.compile(model) if self.runtime == "torch_compile" else model

            def run(x: torch.Tensor) -> Any:
                with torch_threads(self.threads), torch.inference_mode():
                    return net(x)

            return run
        graph = model if isinstance(model, bytes) else onnx_bytes(model, self.input_shape)
        if self.runtime == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            return lambda x: session.run(None, {"images": x})[0]
        import openvino as ov

        core = ov.Core()
        if is_ir(graph):  # NNCF's int8 network (harness.measure.quantize)
            xml, weights = ir_files(graph)
            network = core.read_model(xml.decode(), ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))
        else:
            network = core.read_model(graph)
        compiled = core.compile_model(network, "CPU",
                                           {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})[0]

    def batch(self, size: int, seed: int = 0) -> Any:
        """A batch of ``size`` random images in the form this runtime takes."""
        x = np.random.default_rng(seed).random((size, *self.input_shape), dtype=np.float32)
        return torch.from_numpy(x) if self.runtime in ("torch", "torch_compile") else x

    def __call__(self, x: Any) -> np.ndarray:
        """The logits of a batch (as :meth:`batch` makes it), as a NumPy array."""
        out = self._run(x)
        return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
        """Top-1 accuracy on float32 images ``x`` (in [0, 1]) with labels ``y``, ``batch`` at a time."""
        logits = np.concatenate([self(x[i:i + batch]) for i in range(0, len(x), batch)])
        return float((logits.argmax(1) == y).mean())

    def latency_ms(self, batch: int, warmup: int = 5, repeats: int = 20, min_run_s: float = 0.002) -> float:
        """Median milliseconds per forward pass of a batch of ``batch`` images."""
        x = self.batch(batch)
        return time_calls(lambda: self._run(x), warmup, repeats, min_run_s)
