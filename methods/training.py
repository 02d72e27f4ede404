"""The compact training loop pieces every method shares (plain PyTorch)."""
from __future__ import annotations

import math
from typing import Iterable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    """A split that yields (images, labels) batches on the trial's device."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None) -> Iterable[Batch]: ...

    def take(self, index: torch.Tensor, augment: bool = False,
             generator: torch.Generator | None = None) -> Batch:
        """The samples at ``index`` (a slice of a permutation), augmented if asked."""


class BatchStream:
    """Endless reshuffled passes over a split, one batch per ``next()``, resumable mid-pass.

    For methods that count training in steps rather than passes (C2S2's gate
    and fine-tuning steps, substitute-data distillation). It draws exactly what
    ``split.batches(shuffle=True)`` would, pass after pass, and its state (the
    pass's order and the position in it) goes into checkpoints, so a trial
    resumed part-way through a pass takes the batches it would have taken.
    """

    def __init__(self, split: BatchSource, batch_size: int, generator: torch.Generator,
                 augment: bool = False) -> None:
        self.split, self.batch_size, self.generator, self.augment = split, batch_size, generator, augment
        self.order: torch.Tensor | None = None
        self.position = 0

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        if self.order is None or self.position >= len(self.order):
            self.order = torch.randperm(len(self.split), device=self.generator.device, generator=self.generator)
            self.position = 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += len(index)
        return self.split.take(index, self.augment, self.generator)

    def state_dict(self) -> dict[str, torch.Tensor | int | None]:
        return {"order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, torch.Tensor | int | None]) -> None:
        self.order, self.position = state["order"], state["position"]


def sgd(params, lr: float, momentum: float, weight_decay: float, nesterov: bool = True) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov and momentum > 0)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero at ``total_steps``.

    The schedule always spans the trial's full budget, so that ASHA compares
    trials at a rung under the learning rate they would have had anyway.
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, alpha: float,
                      tau: float) -> torch.Tensor:
    """Hinton's mix: ``(1 - alpha) * CE(z_S, y) + alpha * kd_loss(z_S, z_T, tau)``."""
    return (1 - alpha) * F.cross_entropy(logits, y) + alpha * kd_loss(logits, teacher_logits, tau)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hinton's soft-target term, ``tau^2 * KL(softmax(z_T/tau) || softmax(z_S/tau))``."""
    return F.kl_div(
        F.log_softmax(student_logits / tau, dim=1),
        F.log_softmax(teacher_logits / tau, dim=1),
        reduction="batchmean", log_target=True,
    ) * tau * tau


@torch.inference_mode()
def evaluate(model: nn.Module, split: BatchSource, batch_size: int = 1024) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a split (one device sync, at the end)."""
    was_training = model.training
    model.eval()
    correct: torch.Tensor | int = 0
    loss: torch.Tensor | float = 0.0
    n = 0
    for x, y in split.batches(batch_size):
        logits = model(x)
        correct = correct + (logits.argmax(1) == y).sum()
        loss = loss + F.cross_entropy(logits.float(), y, reduction="sum")
        n += len(y)
    model.train(was_training)
    return {"acc": float(correct) / max(1, n), "loss": float(loss) / max(1, n)}


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the form in which teachers are used."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
