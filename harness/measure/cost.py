"""Measurement of a deployed student: size, MACs and latency on the trial's device.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and
convolutions, the operations that dominate; FLOPs / 2). Latency is wall time of
a forward pass in inference mode: warm-up, then the median over ``repeats``
timed runs, each run looping enough forward passes to last about 2 ms so that
timer resolution does not dominate tiny models.
"""
from __future__ import annotations

import hashlib
import io
import json
import platform
import statistics
import time
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def network_fingerprint(model: nn.Module) -> str:
    """What decides a network's speed, weights excluded: every module's name, class and
    settings (``extra_repr``: kernel, stride, ...) and every tensor's shape and dtype.
    Two trials of one student architecture share it; a pruned network's narrower layers
    change it. 16 hex digits of its SHA-256."""
    layers = []
    for name, module in model.named_modules():
        tensors = [(n, list(t.shape), str(t.dtype)) for n, t in
                   [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)] if t is not None]
        layers.append([name, f"{type(module).__module__}.{type(module).__qualname__}", module.extra_repr(), tensors])
    return hashlib.sha256(json.dumps(layers).encode()).hexdigest()[:16]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def network_cost(model: nn.Module, metric: str, input_shape: tuple[int, ...], device: torch.device) -> int:
    """What a pruning target counts: one image's ``macs``, or the ``params``."""
    if metric == "params":
        return count_params(model)
    if metric == "macs":
        return count_macs(model, input_shape, device)
    raise ValueError(f"unknown cost '{metric}' (choose from: macs, params)")


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the file a user would ship."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def count_macs(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """Multiply-accumulates of one forward pass for one image."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(call: Callable[[], Any], warmup: int, repeats: int, min_run_s: float = 0.002,
               sync: Callable[[], None] = lambda: None) -> float:
    """Median milliseconds per ``call()``: ``warmup`` calls, then ``repeats`` timed runs, each
    looping enough calls to last about ``min_run_s`` so that timer resolution does not
    dominate tiny networks; ``sync`` waits for queued work (a GPU's) before a clock is read."""
    for _ in range(warmup):
        call()
    sync()
    start = time.perf_counter()
    call()
    sync()
    loops = max(1, int(min_run_s / max(time.perf_counter() - start, 1e-6)))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        sync()
        runs.append((time.perf_counter() - start) / loops)
    return 1000 * statistics.median(runs)


def latency_ms(model: nn.Module, x: torch.Tensor, warmup: int = 5, repeats: int = 20,
               min_run_s: float = 0.002) -> float:
    """Median milliseconds per forward pass of ``model`` on the batch ``x``."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        ms = time_calls(lambda: model(x), warmup, repeats, min_run_s, sync=lambda: _sync(x.device))
    model.train(was_training)
    return ms


@lru_cache(maxsize=None)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{_cpu_name()} ({threads} thread{'s' * (threads != 1)})"


def measure_structure(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> dict[str, int]:
    """The cheap, deterministic costs: reported every epoch (pruning changes them)."""
    return {"params": count_params(model), "size_bytes": serialized_size(model),
            "macs": count_macs(model, input_shape, device)}


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                    batch_size: int = 64, warmup: int = 5, repeats: int = 20) -> dict[str, float]:
    """Latency at batch 1 and at ``batch_size``, in milliseconds."""
    return {
        "latency_b1_ms": latency_ms(model, torch.randn(1, *input_shape, device=device), warmup, repeats),
        "latency_ms": latency_ms(model, torch.randn(batch_size, *input_shape, device=device), warmup, repeats),
    }


def measure_model(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                  batch_size: int = 64, warmup: int = 5, repeats: int = 20) -> dict[str, float | int | str]:
    """Everything the results record about a model's cost."""
    return {
        **measure_structure(model, input_shape, device),
        **measure_latency(model, input_shape, device, batch_size, warmup, repeats),
        "network": network_fingerprint(model),
        "latency_batch": batch_size,
        "device": device_name(device),
    }
