"""``hint_kd``: Hinton KD plus a FitNets-style hint (Romero et al., 2015): the student's
features, mapped by a 1x1 convolution onto the teacher's feature shape, are pulled towards
the teacher's by a mean squared distance.

Loss: ``(1 - alpha) * CE + alpha * tau^2 * KL + hint_weight * MSE(adapter(f_S(x)), f_T(x))``.
The adapter trains with the student and is dropped from the exported network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import MethodContext, SupervisedMethod, TrainParams
from methods.kdgan import FeatureAdapter
from methods.knobs import NON_NEGATIVE, POSITIVE, UNIT, knob
from methods.training import distillation_loss


@dataclass
class HintKDParams(TrainParams):
    tau: float = knob(4.0, POSITIVE, help="softmax temperature of the soft targets")
    alpha: float = knob(0.9, UNIT, help="weight of the soft-target term; 1 - alpha weighs cross-entropy")
    hint_weight: float = knob(1.0, NON_NEGATIVE, help="weight of the feature hint term (0: plain KD)")


class HintKD(SupervisedMethod):
    Params = HintKDParams
    needs_features = ("student", "teacher")  # the spec names where each network is split (features:)

    def __init__(self, ctx: MethodContext, params: HintKDParams) -> None:
        super().__init__(ctx, params)
        with torch.no_grad():  # per-sample feature shapes, from one blank image, BatchNorm untouched
            probe = torch.zeros(1, *ctx.input_shape, device=ctx.device)
            ctx.student.eval()
            shapes = ctx.student.features(probe).shape[1:], ctx.teacher.features(probe).shape[1:]
        self.adapter = FeatureAdapter(*shapes).to(ctx.device)  # a module: saved in every checkpoint

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.ctx.student.parameters()
        yield from self.adapter.parameters()

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        student, teacher = self.ctx.student, self.ctx.teacher
        with torch.no_grad():
            teacher_features = teacher.features(x)
            teacher_logits = teacher.classifier(teacher_features)
        features = student.features(x)
        loss = distillation_loss(student.classifier(features), teacher_logits, y, self.params.alpha, self.params.tau)
        if self.params.hint_weight > 0:
            loss = loss + self.params.hint_weight * F.mse_loss(self.adapter(features), teacher_features)
        return loss
