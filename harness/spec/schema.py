"""The study spec's fields: one dataclass per mapping of the YAML file, with defaults.

``harness.spec.load`` reads a file into them; ``harness.spec.checks`` checks their values.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from methods.study import Distribution, Network, StudyView

# Metrics every trial reports at each epoch, and those measured once at its end.
EPOCH_METRICS = {"val_acc": "max", "val_loss": "min", "train_loss": "min"}
FINAL_METRICS = {"params": "min", "size_bytes": "min", "macs": "min",
                 "latency_b1_ms": "min", "latency_ms": "min"}
TEST_METRICS = ("test_acc", "test_loss")


@dataclass
class DatasetSpec:
    name: str = "digits"
    root: str | None = None  # default: $HARNESS_DATA, else ./data
    download: bool = True
    val_fraction: float = 0.1
    split_seed: int = 0
    augment: str | None = None  # none | crop | crop_flip; default: the data set's own
    substitute: str | None = None  # another data set's images for substitute-data baselines
    # An image folder's own (dataset.name: imagefolder): its folders, image size and memory limit.
    train: str | None = None
    test: str | None = None
    image_size: int | None = None
    memory_gb: float | None = None

    def options(self) -> dict[str, Any]:
        """The loader's own options that the spec sets."""
        return {name: getattr(self, name) for name in LOADER_OPTIONS if getattr(self, name) is not None}


LOADER_OPTIONS = ("train", "test", "image_size", "memory_gb")


@dataclass
class ModelSpec:
    model: str  # a zoo name, torchvision:NAME or package.module:function (harness/networks/build.py)
    width: float = 1.0  # zoo models only
    kwargs: dict[str, Any] = field(default_factory=dict)  # a factory's own arguments
    features: str | None = None  # outside the zoo: the node that ends the features, for feature methods
    # A chain: the network, weights and pruned shapes of another study's trial (harness.spec.parents);
    # the fields above are then the parent's, filled in when the spec is read.
    from_study: str | None = None  # the parent study's folder or URI
    trial: str = "best"  # best (on validation, over all its seeds) or a trial id


@dataclass
class TeacherSpec(ModelSpec):
    checkpoint: str | None = None  # a state_dict file; otherwise trained once and cached
    seed: int = 0
    recipe: dict[str, Any] = field(default_factory=dict)  # scratch knobs and ``epochs``


@dataclass
class Objective:
    metric: str  # with ``target``: the target's latency column, ``latency_ms@TARGET.bBATCH`` (target_metric)
    mode: str  # max | min
    target: str | None = None  # a deployment target's name (``deploy.targets``); metric ``latency``
    batch: int | None = None  # which of the target's batch sizes; default: its only one


def target_metric(target: str, batch: int) -> str:
    """The name of a target's latency at one batch size, as trials report it when it is an objective."""
    return f"latency_ms@{target}.b{batch}"


@dataclass
class ConstraintSpec:
    """A limit the search keeps to (harness.study.constraints): one cost of the trial's network at most
    ``max``, or at most ``max_x_teacher`` times the teacher's (measured beside it)."""

    metric: str  # latency | params | size_bytes | macs
    max: float | None = None
    max_x_teacher: float | None = None
    target: str | None = None  # latency on a deployment target (deploy.targets); default: the trial's own
    batch: int | None = None  # latency's batch size: 1, measure.batch_size (the default) or one of the target's


CONSTRAINT_METRICS = ("latency", "params", "size_bytes", "macs")


def constraint_column(limit: ConstraintSpec) -> str:
    """The trial figure a limit holds (its ``batch`` set by the spec's checks): a cost column, or a latency's."""
    if limit.metric != "latency":
        return limit.metric
    if limit.target is not None:
        return target_metric(limit.target, limit.batch)
    return "latency_b1_ms" if limit.batch == 1 else "latency_ms"


def constraint_label(limit: ConstraintSpec) -> str:
    """How reports name a limit: ``latency <= 0.5x teacher``, ``params <= 20,000``."""
    where = f"@{limit.target}" if limit.target else ""
    batch = f" (batch {limit.batch})" if limit.metric == "latency" else ""
    if limit.max_x_teacher is not None:
        return f"{limit.metric}{where}{batch} <= {limit.max_x_teacher:g}x teacher"
    unit = " ms" if limit.metric == "latency" else ""
    return f"{limit.metric}{where}{batch} <= {limit.max:,g}{unit}"
# Knobs of the harness's, searched beside the method's: the trial's student width (student.width).
HARNESS_KNOBS = ("student.width",)


@dataclass
class SearchSpec:
    space: dict[str, Any] = field(default_factory=dict)  # name -> Distribution or a fixed value
    objectives: list[Objective] = field(default_factory=lambda: [Objective("val_acc", "max")])
    searcher: str = "auto"  # auto | tpe | nsga2 | random
    num_samples: int = 8
    max_concurrent: int | None = None  # default: as many trials as the resources fit
    startup_trials: int | None = None  # TPE's random trials before it models; default from num_samples
    storage: str | None = None  # an Optuna storage URL or journal file; default: the study's optuna.journal
    constraints: list[ConstraintSpec] = field(default_factory=list)  # limits inside the search (docs/spec.md)


@dataclass
class AshaSpec:
    grace_period: int = 1
    reduction_factor: float = 2.0
    stop_at_chance: bool = True  # from the grace period on, also stop a trial no better than guessing


@dataclass
class TrackingSpec:
    mlflow: dict[str, Any] | None = None  # tracking_uri, experiment_name, tags (harness.study.tracking)
    tensorboard: bool = False


@dataclass
class ResourcesSpec:
    cpu: float = 1.0
    gpu: float = 0.0  # fractions share one GPU between trials (each capped to its share of memory)
    precision: str = "fp32"  # fp32 | bf16 (autocast while training; evaluation and latency in fp32)
    retries: int = 3  # times a trial whose worker died is restarted from its last report
    channels_last: bool = False  # NHWC weights: faster convolutions on many devices (benchmarks/throughput.py)
    compile: bool = False  # torch.compile student and teacher: pays off for larger convnets, costs a compile per trial


@dataclass
class MeasureSpec:
    batch_size: int = 64  # the larger of the two latency batch sizes (the other is 1)
    warmup: int = 5
    repeats: int = 20
    # Interleaved passes measuring every completed trial's network again once the study's
    # searches have ended, each distinct network once (harness/study/remeasure.py); 0 keeps the
    # figures taken in the trial. 5 rounds: the range of the rounds is a 94% interval.
    rounds: int = 5
    # A network whose interval is wider than this fraction of its median is measured again,
    # up to `attempts` times in all, and flagged noisy if it stays wider (harness/measure/latency.py).
    max_spread: float = 0.25
    attempts: int = 3


@dataclass
class NodeSpec:
    """Which Ray node a target's latency is measured on: one with these custom resources
    (``ray start --resources '{"edge_x86": 1}'``) and labels (``ray start --labels``)."""

    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class TargetSpec:
    """Where a network is deployed: a runtime, batch sizes, threads and a node (docs/protocol.md)."""

    runtime: str = "torch"  # torch | torch_compile | onnxruntime | openvino (harness.measure.runtimes)
    batch: list[int] = field(default_factory=lambda: [1])
    threads: int = 1
    node: NodeSpec | None = None  # default: any node of the cluster
    precision: str = "fp32"  # fp32 | int8 (post-training static quantization, harness.measure.quantize)

    @property
    def placed(self) -> bool:
        return self.node is not None and bool(self.node.resources or self.node.labels)


DEFAULT_TARGET = "default"  # the trial's own figures: torch eager, batches 1 and measure.batch_size


@dataclass
class DeploySpec:
    # Name -> target. None: the default target only, the figures every study has.
    targets: dict[str, TargetSpec] = field(default_factory=dict)
    calibration: int = 256  # training images that calibrate an int8 target's quantization
    max_drop: float = 0.01  # an int8 network whose validation accuracy drops more than this is flagged

    @property
    def int8(self) -> dict[str, TargetSpec]:
        """The targets with ``precision: int8``, in the spec's order."""
        return {name: t for name, t in self.targets.items() if t.precision == "int8"}


@dataclass
class BudgetSpec:
    epochs: int = 10  # reports per trial, and ASHA's maximum budget


@dataclass
class StudySpec:
    study: str
    method: str
    student: ModelSpec
    teacher: TeacherSpec | None = None
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    asha: AshaSpec = field(default_factory=AshaSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    measure: MeasureSpec = field(default_factory=MeasureSpec)
    deploy: DeploySpec = field(default_factory=DeploySpec)
    seeds: list[int] = field(default_factory=lambda: [0])
    storage: str = "studies"
    code: list[str] = field(default_factory=list)  # the user's package folders, shipped to every node
    tracking: TrackingSpec = field(default_factory=TrackingSpec)

    @property
    def multi_objective(self) -> bool:
        return len(self.search.objectives) > 1

    @property
    def sampler(self) -> str:
        if self.search.searcher != "auto":
            return self.search.searcher
        return "nsga2" if self.multi_objective else "tpe"

    def fixed_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.search.space.items() if not isinstance(v, Distribution)}

    def searched_params(self) -> dict[str, Distribution]:
        return {k: v for k, v in self.search.space.items() if isinstance(v, Distribution)}

    def method_knobs(self, config: dict[str, Any]) -> dict[str, Any]:
        """The method's knobs of a trial: its fixed and drawn values, the harness's own knobs left out."""
        return {k: v for k, v in {**self.fixed_params(), **config}.items() if k not in HARNESS_KNOBS}

    def trial_student(self, config: dict[str, Any]) -> ModelSpec:
        """The student a trial builds: the spec's, at the width the trial drew when it is searched."""
        if "student.width" not in config:
            return self.student
        return dataclasses.replace(self.student, width=float(config["student.width"]))

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included (study.json's ``spec``; ``load_spec`` reads it back)."""
        return dataclasses.asdict(self)


def study_view(spec: StudySpec) -> StudyView:
    """What a method may check of the study (``Method.check_spec``)."""
    def network(model: ModelSpec) -> Network:
        return Network(model.model, model.width, tuple(sorted(model.kwargs.items())))

    teacher = spec.teacher and network(spec.teacher)
    return StudyView(student=network(spec.student), epochs=spec.budget.epochs,
                     teacher=teacher, substitute=spec.dataset.substitute, knobs=dict(spec.search.space),
                     student_trained=spec.student.from_study is not None)
