"""Shared loop of the data-free methods: distil the teacher on inputs the method makes up.

A data-free method never sees a training or validation image (the trial hands
it :class:`~methods.base.WithheldSplit` stand-ins). Each iteration draws a batch
of inputs (a generator's images, noise, substitute data), asks the teacher for
its logits and trains the student by KD on them, jointly with whatever the
method itself optimises (DAFL's generator) from one backward pass, as in the
DAFL authors' code.

There is no data set to pass over, so a report is ``iterations_per_report``
iterations (DAFL's "epoch" is 120); ASHA's budget, counted in reports, is then a
number of iterations. It is a fixed knob: searching it would let ASHA compare
trials at different amounts of training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from methods.base import Method, MethodContext
from methods.knobs import COUNT, MOMENTUM, NON_NEGATIVE, POSITIVE, knob
from methods.study import StudyError, StudyView
from methods.training import kd_loss


@dataclass
class DataFreeParams:
    """The student's side of data-free distillation (DAFL's MNIST settings by default)."""

    lr_student: float = knob(2e-3, POSITIVE, help="the student's learning rate")
    student_optimizer: str = knob("adam", choices=("adam", "sgd"), help="the student's optimiser")
    lr_schedule: str = knob("constant", choices=("constant", "step", "cosine"),
                            help="step: x0.1 at 40% and x0.01 at 80% of the budget (DAFL's CIFAR schedule, "
                                 "800 and 1,600 of 2,000); cosine: to zero at the end")
    momentum: float = knob(0.9, MOMENTUM, help="SGD momentum (student_optimizer: sgd)")
    weight_decay: float = knob(0.0, NON_NEGATIVE, help="the student's weight decay")
    batch_size: int = knob(512, COUNT, help="made-up images per iteration")
    iterations_per_report: int = knob(120, COUNT,
                                      help="iterations in one report; fixed in a study (ASHA's unit of budget)")
    tau: float = knob(1.0, POSITIVE, help="KD temperature (DAFL's code uses plain KL: 1)")


@dataclass
class Draw:
    """One batch of made-up inputs, the teacher's logits on them, and the method's own loss."""

    inputs: torch.Tensor
    teacher_logits: torch.Tensor
    own_loss: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # logged, detached


class DataFreeDistillation(Method):
    """Subclasses implement :meth:`draw` (and may add optimisers for their own parts)."""

    Params = DataFreeParams
    data_free = True
    family = "data-free"

    def __init__(self, ctx: MethodContext, params: DataFreeParams) -> None:
        super().__init__(ctx, params)
        student = ctx.student.parameters()
        if params.student_optimizer == "adam":
            self.student_optimizer = torch.optim.Adam(student, lr=params.lr_student,
                                                      weight_decay=params.weight_decay)
        else:
            self.student_optimizer = torch.optim.SGD(student, lr=params.lr_student, momentum=params.momentum,
                                                     weight_decay=params.weight_decay)
        self.own_optimizers: list[torch.optim.Optimizer] = []
        self.last_inputs: torch.Tensor | None = None

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        if study.searched("iterations_per_report"):
            raise StudyError("search.space.iterations_per_report: must be a fixed value; it sets what one "
                             "report (ASHA's unit of budget) is worth, so trials would not compare")

    def draw(self, batch_size: int) -> Draw:
        raise NotImplementedError

    def lr_factor(self, epoch: int) -> float:
        progress = epoch / self.ctx.epochs
        schedule = self.params.lr_schedule
        if schedule == "step":
            return 1.0 if progress < 0.4 else 0.1 if progress < 0.8 else 0.01
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    def train_step(self, epoch: int) -> dict[str, float]:
        p = self.params
        for group in self.student_optimizer.param_groups:
            group["lr"] = p.lr_student * self.lr_factor(epoch)
        optimizers = [self.student_optimizer, *self.own_optimizers]
        student = self.ctx.student
        student.train()
        sums: dict[str, torch.Tensor] = {}
        for _ in range(p.iterations_per_report):
            draw = self.draw(p.batch_size)
            kd = kd_loss(student(draw.inputs.detach()), draw.teacher_logits.detach(), p.tau)
            loss = kd if draw.own_loss is None else kd + draw.own_loss
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            for name, value in {"train_loss": loss, "kd_loss": kd, **draw.terms}.items():
                sums[name] = sums.get(name, 0) + value.detach()  # on the device: no sync per step
            self.last_inputs = draw.inputs.detach()
        metrics = {name: value.item() / p.iterations_per_report for name, value in sums.items()}
        metrics["iterations"] = (epoch + 1) * p.iterations_per_report
        return metrics

    def samples(self) -> torch.Tensor | None:
        return self.last_inputs
