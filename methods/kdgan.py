"""``kdgan``: knowledge distillation through feature maps (Chen, "Knowledge Distillation
via Generative Adversarial Networks", NTHU master's thesis, 2018; published as KDFM,
"Knowledge Distillation with Feature Maps"). What differs from it: docs/methods.md.

Both networks are split as ``classifier(features(x))``. The student's loss is

    w_ce * CE(z_S, y) + w_kd * KD(z_S, z_T, tau)
      + w_adv * adv(D(a(f_S))) + w_shared * CE(classifier_T(a(f_S)), y) + w_l2 * mean((a(f_S) - f_T)^2)

where ``a`` is the adapter: identity when the feature shapes agree, otherwise a
1x1 convolution to the teacher's channels and a resize to its spatial size
(average pooling down, bilinear up; vectors are treated as 1x1 maps). The
teacher's classifier is frozen; the adapter trains with the student and is not
part of :meth:`export`, so measured size and latency are the student's alone.

GAN formulation: least squares (Mao et al. 2017, which the thesis cites). The
discriminator ``D`` (two 3x3 convolutions, 1x1 on feature vectors, LeakyReLU,
global pooling, a linear score) minimises ``((D(f_T) - 1)^2 + D(a(f_S))^2) / 2`` for ``d_steps`` Adam
steps at ``d_lr`` per student batch, on that batch's features; the student
minimises ``(D(a(f_S)) - 1)^2 / 2``. Least squares keeps the student's gradient
from vanishing when ``D`` wins, which the original log loss does not.

Terms whose weight is zero are not computed (nor is ``D`` trained when
``w_adv = 0``), so ``w_adv = w_shared = w_l2 = 0`` with ``w_ce = 1 - alpha``,
``w_kd = alpha`` is Hinton KD exactly, step for step: the study measures what
the feature-map terms add. The knob ``alpha`` sets that pair in one draw, so a
study can search KD's mix with the same line as a ``kd`` study.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import MethodContext, SupervisedMethod, TrainParams, register_method
from methods.knobs import COUNT, NON_NEGATIVE, POSITIVE, UNIT, knob
from methods.study import StudyError, StudyView
from methods.training import kd_loss


@dataclass
class KDGANParams(TrainParams):
    tau: float = knob(4.0, POSITIVE, help="KD temperature")
    w_ce: float = knob(0.1, NON_NEGATIVE, help="weight of cross-entropy on the labels")
    w_kd: float = knob(0.9, NON_NEGATIVE, help="weight of Hinton's soft-target term")
    w_adv: float = knob(0.05, NON_NEGATIVE,
                        help="weight of the adversarial (least-squares GAN) term on the adapted student features")
    w_shared: float = knob(0.5, NON_NEGATIVE,
                           help="weight of cross-entropy through the teacher's frozen classifier on the adapted "
                                "student features")
    w_l2: float = knob(0.0, NON_NEGATIVE,
                       help="weight of the mean squared distance between adapted student and teacher features")
    d_lr: float = knob(2e-4, POSITIVE, help="the discriminator's Adam learning rate")
    d_steps: int = knob(1, COUNT, help="discriminator steps per student step (w_adv: 0 trains without it)")
    d_width: int = knob(64, COUNT, help="the discriminator's channels")
    alpha: float | None = knob(None, UNIT,
                               help="KD's mix in one knob: sets w_kd = alpha and w_ce = 1 - alpha "
                                    "(null: w_kd and w_ce apply)")

    def __post_init__(self) -> None:
        if self.alpha is not None:
            self.w_kd, self.w_ce = float(self.alpha), 1.0 - float(self.alpha)


def as_maps(f: torch.Tensor) -> torch.Tensor:
    """Feature vectors (N, C) as 1x1 maps (N, C, 1, 1); maps unchanged."""
    return f[:, :, None, None] if f.dim() == 2 else f


class FeatureAdapter(nn.Module):
    """Maps student features onto the teacher's feature shape (training only)."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        super().__init__()
        s, t = as_maps(torch.empty(1, *student_shape)).shape[1:], as_maps(torch.empty(1, *teacher_shape)).shape[1:]
        self.project = nn.Conv2d(s[0], t[0], 1) if s[0] != t[0] else nn.Identity()
        self.size = tuple(t[1:])
        self.vector_out = len(teacher_shape) == 1

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = self.project(as_maps(f))
        if f.shape[-2:] != self.size:
            larger = f.shape[-2] >= self.size[0] and f.shape[-1] >= self.size[1]
            f = (F.adaptive_avg_pool2d(f, self.size) if larger
                 else F.interpolate(f, size=self.size, mode="bilinear", align_corners=False))
        return f.flatten(1) if self.vector_out else f


class FeatureDiscriminator(nn.Module):
    """Scores teacher-shaped feature maps: high for the teacher's, low for the student's."""

    def __init__(self, channels: int, width: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv3x3(channels, width, size), nn.LeakyReLU(0.2, inplace=True),
            conv3x3(width, width, size), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(as_maps(f)).squeeze(1)


def conv3x3(channels: int, width: int, size: tuple[int, int]) -> nn.Conv2d:
    """A padded 3x3 convolution. On 1x1 maps (feature vectors) only its centre weights meet
    the input, so it becomes the 1x1 convolution holding them: the same function and the
    same initial weights (drawn as 3x3, random state included) for a ninth of the work."""
    conv = nn.Conv2d(channels, width, 3, padding=1)
    if tuple(size) != (1, 1):
        return conv
    point = nn.utils.skip_init(nn.Conv2d, channels, width, 1)  # no draws of its own
    with torch.no_grad():
        point.weight.copy_(conv.weight[:, :, 1:2, 1:2])
        point.bias.copy_(conv.bias)
    return point


@register_method("kdgan")
class KDGAN(SupervisedMethod):
    Params = KDGANParams
    needs_features = ("student", "teacher")
    transient = ("sums",)  # the running means of a report's loss terms, emptied at its end

    def __init__(self, ctx: MethodContext, params: KDGANParams) -> None:
        super().__init__(ctx, params)
        student_shape, teacher_shape = self._feature_shapes()
        self.adapter = FeatureAdapter(student_shape, teacher_shape).to(ctx.device)
        teacher_maps = as_maps(torch.empty(1, *teacher_shape)).shape[1:]
        self.discriminator = FeatureDiscriminator(teacher_maps[0], params.d_width,
                                                  tuple(teacher_maps[1:])).to(ctx.device)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=params.d_lr, betas=(0.5, 0.999))
        self.sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=ctx.device))
        self.batches = 0

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        both = [name for name in ("w_ce", "w_kd") if name in study.knobs]
        if "alpha" in study.knobs and both:
            raise StudyError(f"search.space: alpha sets w_kd = alpha and w_ce = 1 - alpha; "
                             f"remove {' and '.join(both)} or alpha")

    @torch.no_grad()
    def _feature_shapes(self) -> tuple[torch.Size, torch.Size]:
        """Per-sample feature shapes of student and teacher, from one all-zero probe image."""
        probe = torch.zeros(1, *self.ctx.input_shape, device=self.ctx.device)
        student = self.ctx.student
        was_training = student.training
        student.eval()  # the probe must not touch BatchNorm statistics
        shapes = student.features(probe).shape[1:], self.ctx.teacher.features(probe).shape[1:]
        student.train(was_training)
        return shapes

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.ctx.student.parameters()
        yield from self.adapter.parameters()

    def train_discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """``d_steps`` least-squares steps on one batch's features; returns the last loss."""
        for _ in range(self.params.d_steps):
            loss = 0.5 * ((self.discriminator(real) - 1).pow(2).mean() + self.discriminator(fake).pow(2).mean())
            self.d_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.d_optimizer.step()
        return loss.detach()

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p, teacher, student = self.params, self.ctx.teacher, self.ctx.student
        with torch.no_grad():
            teacher_features = teacher.features(x)
            teacher_logits = teacher.classifier(teacher_features)
        features = student.features(x)
        logits = student.classifier(features)
        loss = p.w_ce * F.cross_entropy(logits, y) + p.w_kd * kd_loss(logits, teacher_logits, p.tau)
        terms: dict[str, torch.Tensor] = {}
        if p.w_adv or p.w_shared or p.w_l2:
            adapted = self.adapter(features)
            if p.w_adv:
                terms["d_loss"] = self.train_discriminator(teacher_features, adapted.detach())
                terms["adv_loss"] = 0.5 * (self.discriminator(adapted) - 1).pow(2).mean()
                loss = loss + p.w_adv * terms["adv_loss"]
            if p.w_shared:
                terms["shared_loss"] = F.cross_entropy(teacher.classifier(adapted), y)
                loss = loss + p.w_shared * terms["shared_loss"]
            if p.w_l2:
                terms["l2_loss"] = F.mse_loss(adapted, teacher_features)
                loss = loss + p.w_l2 * terms["l2_loss"]
        for name, value in terms.items():
            self.sums[name] += value.detach()
        self.batches += 1
        return loss

    def train_step(self, epoch: int) -> dict[str, float]:
        metrics = super().train_step(epoch)
        metrics.update({name: (total / max(1, self.batches)).item() for name, total in self.sums.items()})
        self.sums.clear()
        self.batches = 0
        return metrics
