"""``substitute_kd``: the student distilled on another data set's images (their
labels unused), the DAFL paper's "alternative data" baseline (USPS for MNIST:
94.56%). The study names the set as ``dataset.substitute``; the harness resizes
its training images to the target's shape and normalises them as the teacher's
inputs. Same loop, knobs and budget as ``dafl``.
"""
from __future__ import annotations

import torch

from methods.base import MethodContext, register_method
from methods.data_free import DataFreeDistillation, DataFreeParams, Draw
from methods.study import StudyError, StudyView
from methods.training import BatchStream


@register_method("substitute_kd")
class SubstituteKD(DataFreeDistillation):
    def __init__(self, ctx: MethodContext, params: DataFreeParams) -> None:
        super().__init__(ctx, params)
        if ctx.substitute is None:
            raise ValueError("substitute_kd needs substitute images (dataset.substitute in the spec)")
        self.stream = BatchStream(ctx.substitute, params.batch_size, ctx.generator)

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        super().check_spec(study)
        if not study.substitute:
            raise StudyError("dataset.substitute: method 'substitute_kd' distils on another data set's "
                             "images; name one, e.g. substitute: usps")

    def draw(self, batch_size: int) -> Draw:
        x, _ = next(self.stream)  # its labels are never used
        with torch.no_grad():
            logits = self.ctx.teacher(x)
        return Draw(x, logits)
