"""``qat``: quantization-aware fine-tuning, optionally distilled from the teacher, then INT8.

While training, every convolution and linear layer of the student sees its weights and
its input as INT8 would give them (fake quantization, gradients passed straight through,
Jacob et al. 2018): weights symmetric int8, per output channel or per tensor; inputs uint8
with a zero point (or int8 symmetric) over the range a moving average of each batch's
minimum and maximum has seen. The student learns weights that survive rounding. After its
last report the harness quantizes it for real, as ``ptq`` does (with the quantizer of the
study's first int8 target's runtime and this method's calibration knobs): that int8
network's accuracy and size are the trial's. The student starts as the teacher's weights
when it is the teacher's network, or as a chain's parent left it (``student: {from_study: ...}``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.func import functional_call

from methods.base import MethodContext, SupervisedMethod, TrainParams, register_method
from methods.knobs import POSITIVE, UNIT, Bounds, knob
from methods.ptq import PostTrainingQuantization, PTQParams
from methods.training import distillation_loss

RANGE_MOMENTUM = 0.1  # moving average of the inputs' batch ranges (an observer's usual 0.01 needs more steps)


@dataclass
class QATParams(TrainParams, PTQParams):
    alpha: float = knob(0.5, UNIT, help="weight of KD from the teacher; 0 fine-tunes on the labels alone")
    tau: float = knob(4.0, POSITIVE, help="KD temperature")
    freeze_ranges: float = knob(0.5, Bounds(0, 1),
                                help="share of the budget after which the inputs' ranges stop moving")


@register_method("qat")
class QuantizationAwareTraining(SupervisedMethod):
    Params = QATParams
    family = "quantization"
    quantizes = True

    def __init__(self, ctx: MethodContext, params: QATParams) -> None:
        super().__init__(ctx, params)
        if not ctx.student_trained and _same_shapes(ctx.student, ctx.teacher):
            ctx.student.load_state_dict(ctx.teacher.state_dict())
        self.layers = [name for name, m in ctx.student.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        # Per layer, [min, max] of its input as trained so far (NaN: not seen yet).
        self.ranges = torch.full((len(self.layers), 2), float("nan"), device=ctx.device)
        self.epoch = 0

    def train_step(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        return super().train_step(epoch)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        student = self.ctx.student
        weights = {f"{name}.weight": self._fake_weight(student.get_submodule(name).weight) for name in self.layers}
        with self._fake_inputs():
            logits = functional_call(student, weights, (x,), strict=False)
        if self.params.alpha == 0:
            return nn.functional.cross_entropy(logits, y)
        with torch.no_grad():
            teacher_logits = self.ctx.teacher(x)
        return distillation_loss(logits, teacher_logits, y, self.params.alpha, self.params.tau)

    @classmethod
    def quantization(cls, params: QATParams) -> dict[str, Any]:
        return PostTrainingQuantization.quantization(params)

    def _fake_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Symmetric int8, one scale per output channel (or one per tensor), as the quantizer makes them."""
        if self.params.per_channel:
            scale = weight.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / 127
            zero = torch.zeros(len(scale), dtype=torch.int32, device=weight.device)
            return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -128, 127)
        scale = weight.detach().abs().amax().clamp_min(1e-8) / 127
        return torch.fake_quantize_per_tensor_affine(weight, scale, torch.zeros((), dtype=torch.int32,
                                                                                device=weight.device), -128, 127)

    @contextlib.contextmanager
    def _fake_inputs(self) -> Iterator[None]:
        """Each layer's input quantized over its observed range while the student runs."""
        moving = self.epoch < self.params.freeze_ranges * self.ctx.epochs
        handles = [self.ctx.student.get_submodule(name).register_forward_pre_hook(self._input_hook(i, moving))
                   for i, name in enumerate(self.layers)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _input_hook(self, layer: int, moving: bool):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            x = args[0]
            seen = torch.stack([x.detach().min(), x.detach().max()])
            if self.ranges[layer].isnan().any():
                self.ranges[layer] = seen
            elif moving:
                self.ranges[layer] = (1 - RANGE_MOMENTUM) * self.ranges[layer] + RANGE_MOMENTUM * seen
            low, high = self.ranges[layer, 0].clamp(max=0), self.ranges[layer, 1].clamp(min=0)
            if self.params.symmetric:
                scale = torch.maximum(-low, high).clamp_min(1e-8) / 127
                zero, qmin, qmax = torch.zeros((), dtype=torch.int32, device=x.device), -128, 127
            else:
                scale = (high - low).clamp_min(1e-8) / 255
                zero, qmin, qmax = (-low / scale).round().to(torch.int32), 0, 255
            return (torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax), *args[1:])

        return hook


def _same_shapes(student: nn.Module, teacher: nn.Module | None) -> bool:
    if teacher is None:
        return False
    own, theirs = student.state_dict(), teacher.state_dict()
    return own.keys() == theirs.keys() and all(own[k].shape == theirs[k].shape for k in own)
