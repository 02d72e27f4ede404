"""What a compression method is: a class with typed knobs and a per-report step.

A method imports neither Ray nor the harness: before a study runs, the harness
shows it the study (:meth:`Method.check_spec`, a :class:`~methods.study.StudyView`);
in each trial it hands it a :class:`MethodContext` and calls
:meth:`Method.train_step` once per report. Anything a study can search is a
field of the method's ``Params`` dataclass.

Three ways to write one (``docs/adding-a-method.md``): a :class:`SupervisedMethod`
gives a per-batch :meth:`~SupervisedMethod.loss` (``kd.py``); a
:class:`~methods.data_free.DataFreeDistillation` gives a ``draw`` of made-up
inputs (``noise_kd.py``); a plain :class:`Method` writes :meth:`Method.train_step`
itself (or overrides it around the others', as ``filter_pruning_kd.py`` does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from types import UnionType
from typing import Any, Callable, ClassVar, Iterator, Union, get_args, get_origin, get_type_hints

import torch
from torch import nn

from methods.checkpoint import method_state, restore_method
from methods.knobs import COUNT, MOMENTUM, NON_NEGATIVE, POSITIVE, Bounds, coerce, knob
from methods.registry import Registry
from methods.study import StudyView
from methods.training import BatchSource, sgd, warmup_cosine


@dataclass
class TrainParams:
    """Knobs of the student's optimiser, common to every method."""

    lr: float = knob(0.05, POSITIVE, help="the student's SGD learning rate, reached after the warm-up")
    momentum: float = knob(0.9, MOMENTUM, help="SGD momentum (Nesterov)")
    weight_decay: float = knob(5e-4, NON_NEGATIVE, help="SGD weight decay")
    batch_size: int = knob(128, COUNT, help="images per step")
    warmup_epochs: float = knob(0.5, NON_NEGATIVE,
                                help="linear warm-up, in epochs, before the cosine decay over the whole budget")


class DataWithheld(PermissionError):
    """A data-free method asked for images it may not see."""


class WithheldSplit:
    """Stands in for a split a data-free method must not read: any use raises."""

    def __init__(self, part: str, method: str) -> None:
        self.part = part
        self.method = method

    def _refuse(self) -> DataWithheld:
        return DataWithheld(f"method '{self.method}' is data-free: the {self.part} split is withheld")

    def __len__(self) -> int:
        raise self._refuse()

    def batches(self, *args: Any, **kwargs: Any):
        raise self._refuse()

    def take(self, *args: Any, **kwargs: Any):
        raise self._refuse()


@dataclass
class MethodContext:
    """What a trial gives a method."""

    student: nn.Module
    teacher: nn.Module | None  # frozen, in eval mode
    train: BatchSource  # a WithheldSplit for data-free methods
    val: BatchSource  # a WithheldSplit for data-free methods
    epochs: int  # the trial's full budget in reports
    device: torch.device
    generator: torch.Generator  # seeded; use it for every random draw
    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    substitute: BatchSource | None = None  # another data set's images, if the study names one
    # The harness's measure of a network's cost for one image: cost(model, "macs" | "params").
    cost: Callable[[nn.Module, str], int] | None = None
    student_trained: bool = False  # the student starts as another study's trained network (a chain)


class Method:
    """Base class: subclasses set ``Params`` and implement :meth:`train_step`."""

    Params: ClassVar[type] = TrainParams
    needs_teacher: ClassVar[bool] = True
    needs_features: ClassVar[tuple[str, ...]] = ()  # "student", "teacher": whose features(x) it reads
    family: ClassVar[str] = "distillation"  # how reports group methods: also pruning, data-free, baseline
    # Data-free methods get no training or validation images: the trial hands
    # them WithheldSplits, and the training images never reach the trial at all.
    data_free: ClassVar[bool] = False
    # Attributes that checkpoints leave out because __init__ rebuilds them, or they are
    # empty at every report; any other attribute the checkpoint cannot save is an error
    # (methods.checkpoint). Subclasses add their own; the base classes' stay.
    transient: ClassVar[tuple[str, ...]] = ()
    # A method that quantizes: after its last report the harness quantizes export() to int8 with
    # quantization()'s settings, and the trial's accuracy and size are the quantized network's.
    quantizes: ClassVar[bool] = False

    def __init__(self, ctx: MethodContext, params: Any) -> None:
        self.ctx = ctx
        self.params = params

    def train_step(self, epoch: int) -> dict[str, float]:
        """Train for one report's worth (an epoch); return training metrics.

        ``epoch`` counts reports from 0; a resumed trial calls it first with the
        report after the last one saved.
        """
        raise NotImplementedError

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        """Raise :class:`~methods.study.StudyError` if this method cannot run ``study``."""

    def export(self) -> nn.Module:
        """The student as it is deployed: what is evaluated and measured."""
        return self.ctx.student

    @classmethod
    def quantization(cls, params: Any) -> dict[str, Any]:
        """How a quantizing method (``quantizes``) quantizes the network of a trial with knobs
        ``params``: calibration (images), per_channel, symmetric, calibrate (minmax, entropy,
        percentile), percentile. A class method: the harness asks it again for a finished trial."""
        raise NotImplementedError

    @classmethod
    def within(cls, params: Any, limits: dict[str, float]) -> Any:
        """The knobs of a trial held to the study's size limits: ``limits`` maps ``params``,
        ``macs`` or ``size_bytes`` to the largest allowed fraction of the network the trial starts
        from. A method that shrinks its network aims its target at them; others return ``params``."""
        return params

    def samples(self) -> torch.Tensor | None:
        """Images the method trains on now (normalised), if they are worth looking at."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on training after a report (see :mod:`methods.checkpoint`)."""
        return method_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output; called on a freshly built method."""
        restore_method(self, state)

    def prepare_optimizers(self) -> None:
        """Build any optimiser that is created lazily, before its saved state is loaded."""

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in fields(cls.Params)]

    @classmethod
    def param_choices(cls) -> dict[str, tuple[Any, ...]]:
        """Knobs restricted to named values: ``knob(default, choices=(...))``."""
        return {f.name: f.metadata["choices"] for f in fields(cls.Params) if "choices" in f.metadata}

    @classmethod
    def param_bounds(cls) -> dict[str, Bounds]:
        """Numeric knobs' allowed intervals: ``knob(default, bounds)``."""
        return {f.name: f.metadata["bounds"] for f in fields(cls.Params) if "bounds" in f.metadata}

    @classmethod
    def param_type(cls, name: str) -> type:
        """The type of a knob's values (``float`` for ``float | None``)."""
        return next(o for o in cls._param_options(name) if o is not type(None))

    @classmethod
    def _param_options(cls, name: str) -> tuple[Any, ...]:
        kind = get_type_hints(cls.Params)[name]
        return get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)

    @classmethod
    def cast_param(cls, name: str, value: Any) -> Any:
        """One knob's value as its field's type, within its bounds (:func:`methods.knobs.coerce`);
        ``ValueError`` says what was expected."""
        if value is None and type(None) in cls._param_options(name):
            return None
        return coerce(cls.param_type(name), value, cls.param_bounds().get(name))

    @classmethod
    def make_params(cls, values: dict[str, Any]) -> Any:
        """Build ``Params`` from a trial config, casting to each field's type."""
        cast = {}
        for key, value in values.items():
            try:
                cast[key] = cls.cast_param(key, value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return cls.Params(**cast)


class SupervisedMethod(Method):
    """A method that trains the student by SGD on a per-batch loss over the training split."""

    def __init__(self, ctx: MethodContext, params: TrainParams) -> None:
        super().__init__(ctx, params)
        self.optimizer: torch.optim.Optimizer | None = None

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the student's optimiser updates: the student, plus any training-only modules."""
        return self.ctx.student.parameters()

    def start_optimizer(self, epochs: int) -> None:
        """SGD over :meth:`trainable_parameters`, warm-up then cosine over ``epochs``.

        Built lazily, and again by methods that replace the student's layers (pruning).
        """
        p = self.params
        self.optimizer_epochs = epochs  # kept in checkpoints: a resumed schedule is the same schedule
        steps_per_epoch = math.ceil(len(self.ctx.train) / p.batch_size)
        self.optimizer = sgd(self.trainable_parameters(), p.lr, p.momentum, p.weight_decay)
        self.scheduler = warmup_cosine(self.optimizer, epochs * steps_per_epoch,
                                       int(p.warmup_epochs * steps_per_epoch))

    def prepare_optimizers(self) -> None:
        if self.optimizer is None and getattr(self, "optimizer_epochs", None):
            self.start_optimizer(self.optimizer_epochs)

    def train_step(self, epoch: int) -> dict[str, float]:
        if self.optimizer is None:
            self.start_optimizer(self.ctx.epochs - epoch)
        self.ctx.student.train()
        total = torch.zeros((), device=self.ctx.device)
        seen = 0
        for x, y in self.ctx.train.batches(self.params.batch_size, shuffle=True, augment=True,
                                            generator=self.ctx.generator):
            loss = self.loss(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += loss.detach() * len(y)  # stays on the device: no sync per batch
            seen += len(y)
        return {"train_loss": total.item() / max(1, seen)}


METHODS: Registry[type[Method]] = Registry("method", base=Method, entry_points="compression_harness.methods")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def add(cls: type[Method]) -> type[Method]:
        cls.name = name  # type: ignore[attr-defined]
        return METHODS.register(name)(cls)

    return add
