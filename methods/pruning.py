"""Shared pieces of the pruning methods: start from the unpruned network, fine-tune after."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import MethodContext, SupervisedMethod, TrainParams
from methods.knobs import COUNT, POSITIVE, UNIT, knob
from methods.study import StudyError, StudyView
from methods.training import distillation_loss


@dataclass
class PruneParams(TrainParams):
    round_to: int = knob(1, COUNT, help="kept channel counts are rounded up to a multiple of this")
    alpha: float = knob(0.0, UNIT, help="KD weight from the unpruned network while fine-tuning (0: plain fine-tuning)")
    tau: float = knob(4.0, POSITIVE, help="KD temperature while fine-tuning")


class PruningMethod(SupervisedMethod):
    """The student starts as a copy of the unpruned network (the study's teacher),
    is pruned, then fine-tuned with optional KD from the unpruned network."""

    family = "pruning"

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        if study.student != study.teacher:
            raise StudyError(f"student: '{cls.name}' prunes the unpruned network given as teacher; "
                             f"student.model, width and kwargs must equal the teacher's")

    def __init__(self, ctx: MethodContext, params: PruneParams) -> None:
        super().__init__(ctx, params)
        ctx.student.load_state_dict(ctx.teacher.state_dict())
        for p in ctx.student.parameters():
            p.requires_grad_(True)
        self.example = next(iter(ctx.val.batches(1)))[0]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, blended with KD from the unpruned network when ``alpha > 0``."""
        logits = self.ctx.student(x)
        if self.params.alpha == 0:
            return F.cross_entropy(logits, y)
        with torch.no_grad():
            teacher_logits = self.ctx.teacher(x)
        return distillation_loss(logits, teacher_logits, y, self.params.alpha, self.params.tau)
