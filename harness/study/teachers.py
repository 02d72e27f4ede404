"""Teachers: trained once per (architecture, data, recipe, seed) and cached by content,
or loaded from the user's checkpoint file.

A teacher is trained exactly like a ``scratch`` trial (same loop, same
measurement), on the training split only; the validation split stays unseen
by it. The cache lives in ``<storage>/teachers/`` so every study under the same
storage reuses it (on object storage too: pulled into the local mirror when a study
needs it, uploaded once trained).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from harness.data.datasets import DatasetSplits
from harness.errors import CheckpointError
from harness.measure.cost import measure_model
from harness.networks.build import build_network
from harness.spec.schema import BudgetSpec, ModelSpec, SearchSpec, StudySpec
from harness.store.location import Location, open_location
from harness.store.lock import writing
from harness.study.lineage import load_parent
from methods.knobs import show

# What a teacher's metrics keep of its training run's last report (or of its parent trial's row).
TEACHER_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "params", "size_bytes", "macs",
                   "latency_b1_ms", "latency_ms", "latency_batch", "device", "train_s")
CACHE_VERSION = 1  # bump when the training loop changes what a recipe produces
DEFAULT_EPOCHS = 20


@dataclass
class Teacher:
    state: dict[str, torch.Tensor]
    metrics: dict[str, Any]  # val_acc, test_acc, params, latency...; and ``source``


def teacher_study(spec: StudySpec) -> StudySpec:
    """The ``scratch`` study that trains ``spec``'s teacher with its recipe."""
    assert spec.teacher is not None
    recipe = dict(spec.teacher.recipe)
    epochs = int(recipe.pop("epochs", DEFAULT_EPOCHS))
    return dataclasses.replace(
        spec, study=f"{spec.study}-teacher", method="scratch", teacher=None,
        student=ModelSpec(spec.teacher.model, spec.teacher.width, spec.teacher.kwargs, spec.teacher.features),
        budget=BudgetSpec(epochs=epochs), search=SearchSpec(space=recipe),
    )


def cache_key(spec: StudySpec, data: DatasetSplits) -> str:
    from methods.scratch import Scratch

    study = teacher_study(spec)
    material = {
        "model": study.student.model, "width": study.student.width,
        "data": data.fingerprint, "augment": data.augment, "norm": [data.mean, data.std],
        "recipe": dataclasses.asdict(Scratch.make_params(study.search.space)),
        "epochs": study.budget.epochs, "seed": spec.teacher.seed, "version": CACHE_VERSION,
        **({"kwargs": study.student.kwargs} if study.student.kwargs else {}),  # zoo teachers keep their keys
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


TrainFn = Callable[[StudySpec, DatasetSplits], Teacher]


def train_teacher(spec: StudySpec, data: DatasetSplits) -> Teacher:
    """Train the teacher in this process (the sweep runs this as a Ray task)."""
    from harness.study.trial import run_trial

    study = teacher_study(spec)
    last: dict[str, Any] = {}

    def report(metrics: dict[str, Any]) -> None:
        last.update(metrics)
        # The last epoch's figures are in the sweep's summary line; printed here too, Ray
        # forwards the line from the task after that summary, as if training went on.
        if metrics["epoch"] < study.budget.epochs:
            print(f"  teacher {study.student.model} epoch {metrics['epoch']}/{study.budget.epochs}: "
                  f"val_acc {metrics['val_acc']:.4f}", flush=True)

    model = run_trial({}, study, spec.teacher.seed, data, None, report)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return Teacher(state, {k: last[k] for k in TEACHER_METRICS if k in last})


def cache_files(storage: Path, spec: StudySpec, data: DatasetSplits, key: str) -> tuple[Path, Path]:
    """Where the cache under ``storage`` keeps the teacher of ``key``: its weights and its metrics."""
    stem = storage / "teachers" / f"{spec.teacher.model.replace(':', '-')}-{data.name}-{key[:16]}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def obtain_teacher(spec: StudySpec, data: DatasetSplits, storage: Path | Location,
                   train: TrainFn = train_teacher) -> Teacher:
    """The study's teacher: from its checkpoint, another study's trial, the cache, or trained now and cached."""
    assert spec.teacher is not None
    if spec.teacher.checkpoint:
        return load_checkpoint(spec, data)
    if spec.teacher.from_study:
        parent = load_parent(spec.teacher, "teacher", data)
        metrics = {k: parent.row[k] for k in TEACHER_METRICS if k in parent.row and parent.row[k] is not None}
        return Teacher(parent.state, {**metrics, "source": f"trial {parent.trial} of '{parent.study}'"})
    root = storage if isinstance(storage, Location) else open_location(storage)
    key = cache_key(spec, data)
    weights, meta = cache_files(root.local, spec, data, key)
    cached = [p.relative_to(root.local).as_posix() for p in (weights, meta)]
    for name in cached:
        root.pull(name)
    if weights.is_file() and meta.is_file():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        return Teacher(state, {**json.loads(meta.read_text()), "source": "cache"})
    teacher = train(spec, data)
    metrics = {**teacher.metrics, "key": key, "model": spec.teacher.model, "dataset": data.name}
    with writing(weights.parent):
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(teacher.state, weights)
        meta.write_text(json.dumps(metrics, indent=2))
    for name in cached:
        root.push(name)
    return Teacher(teacher.state, {**metrics, "source": "trained"})


def load_checkpoint(spec: StudySpec, data: DatasetSplits) -> Teacher:
    """Load a user's state_dict without executing code, and check it fits the architecture."""
    from harness.data.batches import DeviceData
    from methods.training import evaluate

    path = Path(spec.teacher.checkpoint).expanduser()
    what = f"teacher.checkpoint: '{path}'"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what} {_unloadable(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} holds a {type(state).__name__}, not a state_dict")
    model = build_network(spec.teacher, data.num_classes, data.input_shape, "teacher")
    result = model.load_state_dict(state, strict=False) if _shapes_fit(model, state, what) else None
    if result and (result.missing_keys or result.unexpected_keys):
        parts = []
        if result.missing_keys:
            parts.append(f"missing {_few(result.missing_keys)}")
        if result.unexpected_keys:
            parts.append(f"unexpected {_few(result.unexpected_keys)}")
        raise CheckpointError(f"{what} does not fit {spec.teacher.model} "
                              f"(width {spec.teacher.width}, {data.num_classes} classes): {'; '.join(parts)}")
    cpu = torch.device("cpu")
    device_data = DeviceData(data, cpu, parts=("val", "test"))
    m = spec.measure
    metrics = {"val_acc": evaluate(model, device_data.val)["acc"], "test_acc": evaluate(model, device_data.test)["acc"],
               **measure_model(model, data.input_shape, cpu, m.batch_size, m.warmup, m.repeats),
               "source": "checkpoint"}  # the same columns as a teacher trained here
    return Teacher(model.state_dict(), metrics)


def _unloadable(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line."""
    text = str(exc)
    if isinstance(exc, (EOFError, KeyError)) or any(
            sign in text for sign in ("invalid load key", "zip archive", "Unsupported operand")):
        return "is not a PyTorch checkpoint (a file written by torch.save)"
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        held = f" ({found.group(1)})" if found else ""
        return (f"cannot be loaded safely: it holds more than tensors{held}, and loading it would run code; "
                f"save the model's state_dict() instead")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot be loaded safely (weights only): {first}"


def _shapes_fit(model: torch.nn.Module, state: dict[str, Any], what: str) -> bool:
    own = model.state_dict()
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{what} is not a state_dict: {show(name)} holds {show(tensor)}, "
                                  f"not a tensor")
        if name in own and tensor.shape != own[name].shape:
            raise CheckpointError(f"{what} does not fit: {name} has shape {tuple(tensor.shape)}, "
                                  f"the model expects {tuple(own[name].shape)}")
    return True


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
