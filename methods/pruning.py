"""Shared pieces of the pruning methods: start from the unpruned network, fine-tune after."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Method, MethodContext, TrainParams
from methods.training import kd_loss, sgd, warmup_cosine


@dataclass
class PruneParams(TrainParams):
    round_to: int = 1  # kept channel counts are rounded up to a multiple of this
    alpha: float = 0.0  # KD weight from the unpruned network while fine-tuning (0 = plain fine-tuning)
    tau: float = 4.0


class PruningMethod(Method):
    """The student starts as a copy of the unpruned network (the study's teacher),
    is pruned, then fine-tuned with optional KD from the unpruned network."""

    prune_reports: int = 0  # leading reports spent pruning rather than fine-tuning

    @classmethod
    def check_spec(cls, spec) -> None:
        from harness.errors import SpecError

        if spec.teacher is None or (spec.student.model, spec.student.width) != (spec.teacher.model, spec.teacher.width):
            raise SpecError(f"student: '{cls.name}' prunes the unpruned network given as teacher; "
                            f"student.model and width must equal the teacher's")

    def __init__(self, ctx: MethodContext, params: PruneParams) -> None:
        super().__init__(ctx, params)
        ctx.student.load_state_dict(ctx.teacher.state_dict())
        for p in ctx.student.parameters():
            p.requires_grad_(True)
        self.example = next(iter(ctx.val.batches(1)))[0]
        self.optimizer: torch.optim.Optimizer | None = None

    def task_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.ctx.student(x)
        loss = F.cross_entropy(logits, y)
        if self.params.alpha > 0:
            with torch.no_grad():
                teacher_logits = self.ctx.teacher(x)
            loss = (1 - self.params.alpha) * loss + self.params.alpha * kd_loss(logits, teacher_logits, self.params.tau)
        return loss

    def finetune_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of SGD fine-tuning of the (pruned) student, cosine over the remaining budget."""
        p = self.params
        if self.optimizer is None:  # built after pruning, on the smaller network's parameters
            epochs = max(1, self.ctx.epochs - self.prune_reports)
            per_epoch = math.ceil(len(self.ctx.train) / p.batch_size)
            self.optimizer = sgd(self.ctx.student.parameters(), p.lr, p.momentum, p.weight_decay)
            self.scheduler = warmup_cosine(self.optimizer, epochs * per_epoch, int(p.warmup_epochs * per_epoch))
        self.ctx.student.train()
        total, seen = torch.zeros((), device=self.ctx.device), 0
        for x, y in self.ctx.train.batches(p.batch_size, shuffle=True, augment=True, generator=self.ctx.generator):
            loss = self.task_loss(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += loss.detach() * len(y)
            seen += len(y)
        return {"train_loss": total.item() / max(1, seen)}
