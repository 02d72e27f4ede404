"""One way to build a method's context in a plain loop, and one way to train a teacher for it."""
from __future__ import annotations

import functools
from typing import Any

import torch

import methods
from harness.data.batches import DeviceData
from harness.measure.cost import network_cost
from harness.networks.zoo import create_model
from methods.base import MethodContext
from methods.training import freeze

CPU = torch.device("cpu")


def method_context(student: torch.nn.Module | str = "lenet5_half", teacher: torch.nn.Module | None = None,
                   data: DeviceData | None = None, epochs: int = 3, input_shape: tuple[int, ...] = (1, 28, 28),
                   cost: bool = False, seed: int | None = 0, **fields: Any) -> MethodContext:
    """A method's context on the CPU: ``student`` a network or a zoo name (built after torch is
    seeded with ``seed``; None leaves torch's generator as it is); ``data`` the splits (``train``
    and ``val`` may be given in ``fields`` instead, e.g. withheld ones)."""
    if seed is not None:
        torch.manual_seed(seed)
    if isinstance(student, str):
        student = create_model(student, 10, input_shape=input_shape)
    splits = {"train": data.train, "val": data.val} if data is not None else {}
    extra = {"cost": functools.partial(network_cost, input_shape=input_shape, device=CPU)} if cost else {}
    return MethodContext(student=student, teacher=teacher, epochs=epochs, device=CPU,
                         generator=torch.Generator().manual_seed(0), input_shape=input_shape,
                         **{**splits, **extra, **fields})


def trained_teacher(name: str, data: DeviceData, epochs: int, **knobs: Any) -> torch.nn.Module:
    """A zoo network trained from scratch on ``data`` for ``epochs`` (seeded; scratch's knobs,
    batch 32 unless given), frozen."""
    scratch = methods.METHODS.get("scratch")
    ctx = method_context(name, data=data, epochs=epochs)
    method = scratch(ctx, scratch.make_params({"batch_size": 32, **knobs}))
    for epoch in range(epochs):
        method.train_step(epoch)
    return freeze(ctx.student)
