"""A method that stands in for training: each report waits a fixed time and takes a few
SGD steps, so that trials end at different accuracies and ASHA has choices to make. It
measures what the harness itself costs around trials (benchmarks/scale.py), as a method
from outside the project would, by import path (``method: sleeper:Sleep``, shipped
with ``--code``)."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch.nn.functional as F

from methods.base import SupervisedMethod, TrainParams
from methods.knobs import COUNT, NON_NEGATIVE, knob


@dataclass
class SleepParams(TrainParams):
    seconds: float = knob(0.1, NON_NEGATIVE, help="the wait per report, standing in for an epoch's training")
    steps: int = knob(2, COUNT, help="SGD steps per report")


class Sleep(SupervisedMethod):
    Params = SleepParams
    needs_teacher = False
    family = "baseline"

    def train_step(self, epoch: int) -> dict[str, float]:
        if self.optimizer is None:
            self.start_optimizer(self.ctx.epochs - epoch)
        time.sleep(self.params.seconds)
        self.ctx.student.train()
        batches = self.ctx.train.batches(self.params.batch_size, shuffle=True, generator=self.ctx.generator)
        for x, y in itertools.islice(batches, self.params.steps):
            loss = F.cross_entropy(self.ctx.student(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"train_loss": float(loss.detach())}
