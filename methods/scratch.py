"""``scratch``: the student trained alone on the labels, the baseline for every method."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.base import SupervisedMethod, TrainParams, register_method


@register_method("scratch")
class Scratch(SupervisedMethod):
    Params = TrainParams
    needs_teacher = False
    family = "baseline"

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.ctx.student(x), y)
