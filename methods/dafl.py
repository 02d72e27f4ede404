"""``dafl``: Chen et al. (ICCV 2019), "DAFL: Data-Free Learning of Student Networks".

The teacher is a fixed discriminator; a generator G learns to produce images
the teacher responds to strongly, and the student is distilled on them:

    L_G = one_hot * CE(z_T, argmax z_T) + alpha * (-mean |f_T|) + beta * (-H(mean softmax z_T))

with ``f_T`` the teacher's last features (``ZooModel.features``; after its ReLU
their mean equals the mean of the pooled vector the authors use) and ``H`` in
base 10, as in the authors' code, so that ``beta = 5`` means what it meant
there. G and the student step together from one backward pass of
``L_G + KD(S(G(z).detach()), T(G(z)))``, as in that code.

The generator is the authors' DCGAN-style one (linear to a quarter-size map,
two upsample+conv stages, tanh, then a BatchNorm without affine that puts the
images in the normalised input space the teacher expects), with ``eps=0.8`` in
its inner BatchNorms exactly as written there. ``generator_width`` scales its
128/64 channels so CPU studies can use a slim one. Each report also logs ``image_spread``,
the generated images' standard deviation across the batch (per pixel, averaged): a
generator that has collapsed to one image shows it falling to 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import MethodContext, register_method
from methods.data_free import DataFreeDistillation, DataFreeParams, Draw
from methods.knobs import COUNT, NON_NEGATIVE, POSITIVE, knob


@dataclass
class DAFLParams(DataFreeParams):
    alpha: float = knob(0.1, NON_NEGATIVE, help="weight of the activation loss (paper: 0.1)")
    beta: float = knob(5.0, NON_NEGATIVE, help="weight of the information-entropy loss (paper: 5)")
    one_hot: float = knob(1.0, NON_NEGATIVE,
                          help="weight of the one-hot loss (paper: 1; the authors use 0.5 for CIFAR-100)")
    lr_generator: float = knob(0.2, POSITIVE, help="the generator's Adam learning rate (paper: 0.2 on MNIST)")
    latent_dim: int = knob(100, COUNT, help="size of the generator's noise input")
    generator_width: float = knob(1.0, POSITIVE,
                                  help="scales the generator's 128/64 channels (0.25 for CPU studies)")


class Generator(nn.Module):
    """Noise ``(N, latent_dim)`` to images of ``image_shape`` in normalised input space."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: float = 1.0) -> None:
        super().__init__()
        channels, height, width_px = image_shape
        wide, narrow = max(1, round(128 * width)), max(1, round(64 * width))
        self.image_shape = image_shape
        self.init = (math.ceil(height / 4), math.ceil(width_px / 4))
        self.project = nn.Linear(latent_dim, wide * self.init[0] * self.init[1])
        self.norm0 = nn.BatchNorm2d(wide)
        self.block1 = nn.Sequential(nn.Conv2d(wide, wide, 3, padding=1), nn.BatchNorm2d(wide, eps=0.8),
                                    nn.LeakyReLU(0.2, inplace=True))
        self.block2 = nn.Sequential(nn.Conv2d(wide, narrow, 3, padding=1), nn.BatchNorm2d(narrow, eps=0.8),
                                    nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(narrow, channels, 3, padding=1),
                                    nn.Tanh(), nn.BatchNorm2d(channels, affine=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm0(self.project(z).view(len(z), -1, *self.init))
        x = self.block1(F.interpolate(x, scale_factor=2))
        x = self.block2(F.interpolate(x, scale_factor=2))
        if x.shape[2:] != self.image_shape[1:]:  # sides not divisible by 4
            x = F.interpolate(x, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return x


def generator_losses(logits: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """DAFL's three generator terms, each to be minimised."""
    mean_prob = F.softmax(logits, dim=1).mean(0)
    return {
        "one_hot_loss": F.cross_entropy(logits, logits.argmax(1)),
        "activation_loss": -features.abs().mean(),
        "entropy_loss": (mean_prob * torch.log10(mean_prob.clamp_min(1e-12))).sum(),  # = -H
    }


@register_method("dafl")
class DAFL(DataFreeDistillation):
    Params = DAFLParams
    needs_features = ("teacher",)

    def __init__(self, ctx: MethodContext, params: DAFLParams) -> None:
        super().__init__(ctx, params)
        self.generator = Generator(params.latent_dim, ctx.input_shape, params.generator_width).to(ctx.device)
        self.own_optimizers = [torch.optim.Adam(self.generator.parameters(), lr=params.lr_generator)]

    def draw(self, batch_size: int) -> Draw:
        p = self.params
        z = torch.randn(batch_size, p.latent_dim, device=self.ctx.device, generator=self.ctx.generator)
        images = self.generator(z)
        teacher = self.ctx.teacher  # frozen: gradients flow through it to the images only
        features = teacher.features(images)
        logits = teacher.classifier(features)
        terms = generator_losses(logits, features)
        own = (p.one_hot * terms["one_hot_loss"] + p.alpha * terms["activation_loss"]
               + p.beta * terms["entropy_loss"])
        # Logged, not optimised: near 0 once the generator has collapsed to one image for every
        # noise vector, after which the student sees one input and stops learning.
        terms["image_spread"] = images.detach().std(0).mean()
        return Draw(images, logits, own, terms)
