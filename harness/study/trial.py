"""One trial: a method trained for the budget, a report per epoch, measured at the end.

:func:`run_trial` is plain PyTorch with a ``report`` callback, so it runs the
same under Ray Tune (see ``harness.study.sweep``), in a test or in a notebook. With
``checkpoints=True`` each report also carries the trial's state, from which
``resume=`` goes on after the last report as if nothing had happened.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

import methods
from harness.data.batches import DeviceData
from harness.data.datasets import DatasetSplits
from harness.data.samples import save_sample_grid
from harness.measure.cost import (
    device_name,
    measure_latency,
    measure_model,
    measure_structure,
    network_cost,
    network_fingerprint,
)
from harness.networks.build import build_network, trained_network
from harness.spec.schema import ResourcesSpec, StudySpec
from harness.study.constraints import handed_limits, judge, study_limits
from harness.study.quantized import quantized_trial
from harness.study.targets import trial_figures
from methods.base import MethodContext, WithheldSplit
from methods.training import evaluate, freeze

Report = Callable[..., None]  # report(metrics), or report(metrics, state) with checkpoints
STATE_FILE = "trial_state.pt"  # in each checkpoint folder: the state a report saved


def trial_device(gpu_share: float) -> torch.device:
    return torch.device("cuda") if gpu_share > 0 and torch.cuda.is_available() else torch.device("cpu")


def claim_device(resources: ResourcesSpec) -> torch.device:
    """The trial's device; on a GPU shared by fractions, cap this process's memory to its share,
    so that one trial's allocations cannot starve its neighbours."""
    device = trial_device(resources.gpu)
    if device.type == "cuda" and resources.gpu < 1:
        torch.cuda.set_per_process_memory_fraction(resources.gpu, device)
    return device


def autocast(resources: ResourcesSpec, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for training when the spec asks (no loss scaling needed, unlike fp16).

    It wraps a whole report of a method's training, optimiser steps included, so its
    cache of low-precision weights is off: with it, every forward pass after the first
    step would use the weights as they were at the first one.
    """
    if resources.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_threads(cpu_share: float) -> None:
    """One intra-op thread per CPU the trial holds, so parallel trials don't oversubscribe."""
    torch.set_num_threads(max(1, math.floor(cpu_share)))


def prepare_model(model: torch.nn.Module, channels_last: bool = False,
                  compile: bool = False) -> torch.nn.Module:
    """Channels-last weights and ``torch.compile``, in place: the module's type and its
    state_dict keys stay the same, so checkpoints do not change. Latency is measured on
    the model as trained (compiled, channels-last)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()
    return model


def load_teacher(spec: StudySpec, num_classes: int, input_shape: tuple[int, ...],
                 state: dict[str, torch.Tensor] | None, device: torch.device) -> torch.nn.Module | None:
    if spec.teacher is None or state is None:
        return None
    teacher = trained_network(spec.teacher, num_classes, input_shape, "teacher", state)
    return freeze(prepare_model(teacher.to(device), spec.resources.channels_last, spec.resources.compile))


def trial_data(method_cls: type, data: DatasetSplits, device: torch.device) -> DeviceData:
    """The splits moved to the trial's device: a data-free method's trial never holds
    training images (``data`` should already come without them, see the sweep)."""
    parts = ("val", "test") if method_cls.data_free else ("train", "val", "test")
    if data.substitute is not None:
        parts += ("substitute",)
    return DeviceData(data, device, parts)


def run_trial(config: dict[str, Any], spec: StudySpec, seed: int, data: DatasetSplits,
              teacher_state: dict[str, torch.Tensor] | None, report: Report,
              samples_dir: Path | None = None, checkpoints: bool = False,
              resume: dict[str, Any] | None = None,
              student_state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """Train ``spec.method`` with the knobs in ``config``, report each epoch, return the student.

    ``student_state``: the weights the student starts from (a chained study's parent trial's,
    at its pruned shapes); otherwise it starts as the zoo builds it.

    Methods that expose :meth:`~methods.base.Method.samples` get an image grid
    per report in ``samples_dir`` (when given), its path in the report.
    """
    set_threads(spec.resources.cpu)
    seed_everything(seed)
    device = claim_device(spec.resources)
    method_cls = methods.METHODS.get(spec.method)
    params = method_cls.make_params(spec.method_knobs(config))
    device_data = trial_data(method_cls, data, device)
    model = spec.trial_student(config)  # at the width the trial drew, when it is searched
    student = (trained_network(model, data.num_classes, data.input_shape, "student", student_state).train()
               if student_state is not None else build_network(model, data.num_classes, data.input_shape, "student"))
    student = prepare_model(student.to(device), spec.resources.channels_last, spec.resources.compile)
    teacher = load_teacher(spec, data.num_classes, data.input_shape, teacher_state, device)
    limits = study_limits(spec)
    teacher_cost = measure_structure(teacher, data.input_shape, device) if limits and teacher is not None else {}
    aimed = {}  # knobs a method that shrinks its network aimed at the static limits (Method.within)
    if limits:
        held = method_cls.within(params, handed_limits(
            limits, measure_structure(student, data.input_shape, device), teacher_cost))
        aimed = {f.name: getattr(held, f.name) for f in dataclasses.fields(held)
                 if getattr(held, f.name) != getattr(params, f.name)}
        params = held
    withheld = method_cls.data_free
    ctx = MethodContext(
        student=student,
        teacher=teacher,
        train=WithheldSplit("training", spec.method) if withheld else device_data.train,
        val=WithheldSplit("validation", spec.method) if withheld else device_data.val,
        epochs=spec.budget.epochs, device=device,
        generator=torch.Generator(device=device).manual_seed(seed),
        input_shape=data.input_shape, num_classes=data.num_classes,
        substitute=device_data.substitute if data.substitute is not None else None,
        cost=functools.partial(network_cost, input_shape=data.input_shape, device=device),
        student_trained=student_state is not None,
    )
    method = method_cls(ctx, params)
    first_epoch, earlier_s = 0, 0.0
    if resume is not None:
        method.load_state_dict(resume["method"])
        torch.set_rng_state(resume["torch_rng"])
        first_epoch, earlier_s = resume["epoch"], resume["train_s"]
    started = time.perf_counter() - earlier_s
    for epoch in range(first_epoch, spec.budget.epochs):
        epoch_start = time.perf_counter()
        with autocast(spec.resources, device):
            metrics: dict[str, Any] = dict(method.train_step(epoch))
        val = evaluate(method.export(), device_data.val)
        metrics.update(epoch=epoch + 1, val_acc=val["acc"], val_loss=val["loss"],
                       epoch_s=time.perf_counter() - epoch_start, train_s=time.perf_counter() - started,
                       seed=seed, pid=os.getpid(), device=device_name(device))
        images = method.samples() if samples_dir is not None else None
        if images is not None:
            path = save_sample_grid(images, ctx.teacher, data.mean, data.std,
                                    samples_dir / f"report{epoch + 1:03d}.png")
            metrics["samples"] = str(path)
        if epoch + 1 == spec.budget.epochs:
            metrics.update(final_measurement(method.export(), device_data, spec, device, ctx.teacher))
            if method_cls.quantizes:  # the network it deploys is the int8 one: its accuracy and size
                metrics.update(quantized_trial(method.export(), method.quantization(params), spec, data))
        else:
            # Every report carries every objective (Tune checks); latency is measured once, at the end.
            metrics.update(measure_structure(method.export(), data.input_shape, device),
                           latency_b1_ms=math.nan, latency_ms=math.nan,
                           **{o.metric: math.nan for o in spec.search.objectives if o.target})
        if limits:  # how far over each limit; the latencies from the last report on
            metrics.update(judge(limits, metrics, teacher_cost), **({"aimed": json.dumps(aimed)} if aimed else {}))
        if checkpoints:
            report(metrics, {"epoch": epoch + 1, "train_s": metrics["train_s"], "method": method.state_dict(),
                             "torch_rng": torch.get_rng_state()})
        else:
            report(metrics)
    return method.export()


def final_measurement(student: torch.nn.Module, data: DeviceData, spec: StudySpec,
                      device: torch.device, teacher: torch.nn.Module | None = None) -> dict[str, Any]:
    """Test accuracy (reported, never searched on) and the student's measured cost.

    The teacher's latency is measured here too, right after the student's on the
    same device under the same load, so that speed-ups compare like with like.
    """
    start = time.perf_counter()
    test = evaluate(student, data.test)
    m = spec.measure
    cost = measure_model(student, data.input_shape, device, m.batch_size, m.warmup, m.repeats)
    if teacher is not None:
        latency = measure_latency(teacher, data.input_shape, device, m.batch_size, m.warmup, m.repeats)
        cost.update({f"teacher_{k}": v for k, v in latency.items()}, teacher_network=network_fingerprint(teacher))
    # Objectives and limits naming a target (the teacher too, for a limit relative to it).
    cost.update(trial_figures(student, spec, data.input_shape, data.mean, data.std, teacher))
    return {"test_acc": test["acc"], "test_loss": test["loss"], **cost,
            "measure_s": time.perf_counter() - start}
