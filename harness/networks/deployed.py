"""The network as it is deployed: the data set's normalisation in front of it.

``harness export`` writes this graph, and every deployment target measures it
(harness.study.targets), so that a target's figure is the exported file's: inputs are
float32 images in [0, 1] (uint8 / 255), the normalisation inside.
"""
from __future__ import annotations

import torch
from torch import nn


class Deployed(nn.Module):
    """The student with the data set's normalisation in front: input in [0, 1]."""

    def __init__(self, student: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.student = student
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student((x - self.input_mean) / self.input_std)
