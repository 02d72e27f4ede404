"""``kd``: Hinton et al. (2015), "Distilling the Knowledge in a Neural Network".

Loss: ``(1 - alpha) * CE(z_S, y) + alpha * tau^2 * KL(softmax(z_T/tau) || softmax(z_S/tau))``.
The teacher sees the same augmented batch as the student and runs without
gradients; ``tau^2`` keeps the soft-target gradients on the scale of the
hard-label ones as ``tau`` varies (section 2 of the paper).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import SupervisedMethod, TrainParams, register_method
from methods.knobs import POSITIVE, UNIT, knob
from methods.training import distillation_loss


@dataclass
class KDParams(TrainParams):
    tau: float = knob(4.0, POSITIVE, help="softmax temperature of the soft targets")
    alpha: float = knob(0.9, UNIT,
                        help="weight of the soft-target term; 1 - alpha weighs cross-entropy on the labels")


@register_method("kd")
class HintonKD(SupervisedMethod):
    Params = KDParams

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.ctx.teacher(x)
        return distillation_loss(self.ctx.student(x), teacher_logits, y, self.params.alpha, self.params.tau)
