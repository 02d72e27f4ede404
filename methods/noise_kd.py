"""``noise_kd``: the student distilled on normal-noise inputs, DAFL's lower baseline.

Inputs are N(0, 1) in the normalised input space, the same space the DAFL
generator's final BatchNorm produces; the DAFL paper reports 88.01% for
LeNet-5 -> LeNet-5-half on MNIST with such inputs. Same loop, knobs and budget
as ``dafl``, so the two compare directly.
"""
from __future__ import annotations

import torch

from methods.base import register_method
from methods.data_free import DataFreeDistillation, Draw


@register_method("noise_kd")
class NoiseKD(DataFreeDistillation):
    def draw(self, batch_size: int) -> Draw:
        x = torch.randn(batch_size, *self.ctx.input_shape, device=self.ctx.device, generator=self.ctx.generator)
        with torch.no_grad():
            logits = self.ctx.teacher(x)
        return Draw(x, logits)
