"""What a parsed spec's values mean: registered names, the method's knobs, ranges, objectives,
storage and trackers, checked before any data is read or anything starts.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import methods
from harness.data.datasets import AUGMENTATIONS, dataset_loader, loader_options
from harness.errors import SpecError
from harness.measure.runtimes import missing
from harness.networks.build import factory, is_zoo
from harness.spec.code import use_code
from harness.spec.limits import WIDTH, check_constraints, check_width_knob, target_batch
from harness.spec.method_checks import check_method
from harness.spec.schema import (
    DEFAULT_TARGET,
    EPOCH_METRICS,
    FINAL_METRICS,
    HARNESS_KNOBS,
    TEST_METRICS,
    ModelSpec,
    Objective,
    StudySpec,
    TargetSpec,
    study_view,
    target_metric,
)
from harness.store.journal import check_storage_url
from harness.store.location import check_uri
from methods.knobs import Bounds, coerce, format_number, show
from methods.registry import did_you_mean
from methods.study import Distribution


def check_semantics(spec: StudySpec) -> None:
    """Cross-field checks: registry names, knobs of the method, objectives."""
    spec.code = use_code(spec.code)  # before any name below is imported
    method = methods.METHODS.get(spec.method, field="method")
    if spec.method not in methods.METHODS:  # from outside the project (tests/test_methods.py checks ours)
        check_method(method, spec.method)
    dataset_loader(spec.dataset.name, "dataset.name")

    for option in set(spec.dataset.options()) - loader_options(spec.dataset.name):
        raise SpecError(f"dataset.{option}: '{spec.dataset.name}' does not take it (an image folder's option)")
    if spec.dataset.substitute is not None:
        dataset_loader(spec.dataset.substitute, "dataset.substitute")
        if spec.dataset.substitute == spec.dataset.name:  # a loader or image folder of its own: the same source
            raise SpecError(f"dataset.substitute: '{spec.dataset.substitute}' is the study's own data set, whose "
                            f"training split holds its validation images: a data-free study must not see them; "
                            f"name another data set (the DAFL paper's substitute for MNIST is USPS)")
    _check_network(spec.student, "student", method)
    if spec.dataset.augment is not None and spec.dataset.augment not in AUGMENTATIONS:
        raise SpecError(f"dataset.augment: unknown augmentation '{spec.dataset.augment}'"
                        f"{did_you_mean(spec.dataset.augment, AUGMENTATIONS)}")
    if not 0 < spec.dataset.val_fraction < 1:
        raise SpecError(f"dataset.val_fraction: must be between 0 and 1, got {spec.dataset.val_fraction}")
    if method.needs_teacher and spec.teacher is None:
        raise SpecError(f"teacher: method '{spec.method}' needs a teacher (teacher: {{model: ...}})")
    if spec.teacher is not None:
        _check_network(spec.teacher, "teacher", method)
        _check_recipe(spec.teacher.recipe)
        if spec.teacher.checkpoint and not Path(spec.teacher.checkpoint).expanduser().is_file():
            raise SpecError(f"teacher.checkpoint: file '{spec.teacher.checkpoint}' does not exist")
    knobs = method.param_names()
    choices = method.param_choices()
    check_width_knob(spec, method)
    for name, value in spec.search.space.items():
        if name in HARNESS_KNOBS:
            continue
        if name not in knobs:
            raise SpecError(f"search.space.{name}: '{spec.method}' has no knob '{name}'"
                            f"{did_you_mean(name, knobs)}")
        _check_knob(method, name, value, choices.get(name), f"search.space.{name}")
    method.check_spec(study_view(spec))  # the method's own cross-knob checks, on values of the right types
    searchers = ("auto", "tpe", "nsga2", "random")
    if spec.search.searcher not in searchers:
        raise SpecError(f"search.searcher: unknown searcher '{spec.search.searcher}'"
                        f"{did_you_mean(spec.search.searcher, searchers)}")
    _check_deploy(spec)
    _check_objectives(spec)
    check_constraints(spec)
    _check_ranges(spec)
    if spec.search.storage is not None:
        check_storage_url(spec.search.storage)
    check_tracking(spec)
    check_uri(spec.storage)  # a malformed URI, or one with keys in it: said now (opened by the sweep)
    if spec.asha.grace_period > spec.budget.epochs:
        raise SpecError(f"asha.grace_period: {spec.asha.grace_period} exceeds budget.epochs "
                        f"({spec.budget.epochs}); lower it or raise the budget")
    if spec.resources.precision not in ("fp32", "bf16"):
        raise SpecError(f"resources.precision: '{spec.resources.precision}' is not fp32 or bf16"
                        f"{did_you_mean(spec.resources.precision, ['fp32', 'bf16'])}")
    if not spec.seeds:
        raise SpecError("seeds: give at least one seed, e.g. [0]")
    if len(set(spec.seeds)) < len(spec.seeds):
        raise SpecError(f"seeds: {show(spec.seeds)} names a seed twice; each seed is one search")
    if not spec.study.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SpecError(f"study: '{spec.study}' must be letters, digits, '-', '_' or '.' (it names a folder)")


SEED = Bounds(0, 2**32 - 1)  # what NumPy's and Optuna's generators take
MAX_TRIALS_PER_SEED = 10_000
MAX_SEEDS = 100
# Upper bounds past which a value can only be a mistake (a typo's extra zeros): a study of
# more would run for months on any cluster this harness is for (docs/spec.md lists them).
EPOCHS = Bounds(1, 10_000)
CONCURRENCY = Bounds(1, 10_000)
BATCH = Bounds(1, 65_536)
THREADS = Bounds(1, 1_024)
PRECISIONS = ("fp32", "int8")
INT8_RUNTIMES = ("onnxruntime", "openvino")
ONNX_RUNTIME_KNOBS = ("per_channel", "calibrate", "percentile")  # of a quantizing method: NNCF has no such
ROUNDS = Bounds(0, 1_000)
REPEATS = Bounds(1, 10_000)
RETRIES = Bounds(0, 100)
CPUS = Bounds(0, 1_024, low_open=True)
GPUS = Bounds(0, 64)


def _check_ranges(spec: StudySpec) -> None:
    """Every number of the spec within what it can mean."""
    teacher = spec.teacher
    ranges = [
        ("budget.epochs", spec.budget.epochs, EPOCHS),
        ("search.num_samples", spec.search.num_samples, Bounds(1, MAX_TRIALS_PER_SEED)),
        ("search.startup_trials", spec.search.startup_trials, Bounds(1, MAX_TRIALS_PER_SEED)),
        ("search.max_concurrent", spec.search.max_concurrent, CONCURRENCY),
        ("asha.grace_period", spec.asha.grace_period, EPOCHS),
        ("asha.reduction_factor", spec.asha.reduction_factor, Bounds(1, 100, low_open=True)),
        ("resources.cpu", spec.resources.cpu, CPUS),
        ("resources.gpu", spec.resources.gpu, GPUS),
        ("resources.retries", spec.resources.retries, RETRIES),
        ("measure.batch_size", spec.measure.batch_size, BATCH),
        ("measure.warmup", spec.measure.warmup, Bounds(0, 10_000)),
        ("measure.repeats", spec.measure.repeats, REPEATS),
        ("measure.rounds", spec.measure.rounds, ROUNDS),
        ("measure.max_spread", spec.measure.max_spread, Bounds(0, 100, low_open=True)),
        ("measure.attempts", spec.measure.attempts, Bounds(1, 100)),
        ("deploy.calibration", spec.deploy.calibration, Bounds(1, 100_000)),
        ("deploy.max_drop", spec.deploy.max_drop, Bounds(0, 1)),
        ("dataset.split_seed", spec.dataset.split_seed, SEED),
        ("dataset.image_size", spec.dataset.image_size, Bounds(1, 4096)),
        ("dataset.memory_gb", spec.dataset.memory_gb, Bounds(0, 4096, low_open=True)),
        ("student.width", spec.student.width, WIDTH),
        ("teacher.width", teacher and teacher.width, WIDTH),
        ("teacher.seed", teacher and teacher.seed, SEED),
        *((f"seeds[{i}]", seed, SEED) for i, seed in enumerate(spec.seeds)),
    ]
    for path, value, bounds in ranges:
        if value is not None and value not in bounds:
            raise SpecError(f"{path}: must be {bounds}, got {format_number(value)}")
    if len(spec.seeds) > MAX_SEEDS:
        raise SpecError(f"seeds: at most {MAX_SEEDS} (one search each), got {len(spec.seeds)}")


def _check_network(model: ModelSpec, role: str, method: Any) -> None:
    """The model's name resolves, and its fields fit where it comes from (before any data)."""
    factory(model.model, f"{role}.model")
    if is_zoo(model.model):
        if model.kwargs or model.features:
            raise SpecError(f"{role}: kwargs and features are for models outside the zoo; '{model.model}' "
                            f"takes width only (and is split into features and classifier already)")
        return
    if model.width != 1.0:
        raise SpecError(f"{role}.width: scales zoo models only; give '{model.model}' its own size through kwargs")
    if role in method.needs_features and model.features is None:
        raise SpecError(f"{role}.features: this method reads the {role}'s features; name the node where they "
                        f"end (for example `features: avgpool`; torchvision.models.feature_extraction."
                        f"get_graph_node_names lists a network's nodes)")


def _check_knob(method: Any, name: str, value: Any, choices: tuple[Any, ...] | None, path: str) -> None:
    """A fixed value, categorical choices or distribution bounds that the knob's type takes."""
    if isinstance(value, Distribution):
        if value.kind != "categorical" and (choices or method.param_type(name) not in (int, float)):
            raise SpecError(f"{path}: '{name}' is not numeric, so it takes a fixed value or "
                            f"{{categorical: [...]}}, not {{{value.kind}: ...}}")
        values, path = value.args, f"{path}.{value.kind}"
    else:
        values = [value]
    for v in values:
        if choices is not None and v not in choices:
            raise SpecError(f"{path}: unknown value {show(v)}{did_you_mean(v, choices)}")
        try:
            method.cast_param(name, v)
        except ValueError as exc:
            raise SpecError(f"{path}: {exc}") from None


def _check_recipe(recipe: dict[str, Any]) -> None:
    from methods.scratch import Scratch

    knobs = Scratch.param_names() + ["epochs"]
    for key, value in recipe.items():
        path = f"teacher.recipe.{key}"
        if key not in knobs:
            raise SpecError(f"{path}: unknown knob{did_you_mean(key, knobs)}")
        if isinstance(value, dict):
            raise SpecError(f"{path}: the teacher's recipe takes fixed values, not distributions")
        if key == "epochs":
            try:
                coerce(int, value, EPOCHS)
            except ValueError as exc:
                raise SpecError(f"{path}: {exc}") from None
        else:
            _check_knob(Scratch, key, value, None, path)


def _check_deploy(spec: StudySpec) -> None:
    """Each deployment target runs here (its runtime installed) with sensible numbers. Whether a
    node of the cluster matches its ``node`` is checked when the sweep joins the cluster
    (harness.study.targets.check_placement)."""
    int8 = list(spec.deploy.int8.values())
    if methods.METHODS.get(spec.method).quantizes:
        if not int8:
            raise SpecError(f"deploy.targets: '{spec.method}' quantizes to int8 for a deployment target; name one "
                            f"with precision: int8, e.g. {{ort_int8: {{runtime: onnxruntime, precision: int8}}}}")
        onnx_only = [k for k in ONNX_RUNTIME_KNOBS if isinstance(spec.search.space.get(k), Distribution)]
        if int8[0].runtime == "openvino" and onnx_only:
            raise SpecError(f"search.space.{onnx_only[0]}: the trials' int8 accuracy is NNCF's (the first int8 "
                            f"target runs openvino), which takes calibration and symmetric only; search "
                            f"{', '.join(onnx_only)} with an onnxruntime int8 target first")
    for name, target in spec.deploy.targets.items():
        where = f"deploy.targets.{name}"
        if name == DEFAULT_TARGET or not name.replace("_", "").replace("-", "").isalnum():
            raise SpecError(f"{where}: a target's name is letters, digits, '_' or '-', and not "
                            f"'{DEFAULT_TARGET}' (the figures every trial takes)")
        if (why := missing(target.runtime)) is not None:
            raise SpecError(f"{where}.runtime: {why}")
        if target.precision not in PRECISIONS:
            raise SpecError(f"{where}.precision: '{target.precision}' is not {' or '.join(PRECISIONS)}"
                            f"{did_you_mean(target.precision, PRECISIONS)}")
        if target.precision == "int8" and target.runtime not in INT8_RUNTIMES:
            raise SpecError(f"{where}.precision: int8 is quantized for onnxruntime (ONNX Runtime's static QDQ "
                            f"quantizer) and openvino (NNCF); runtime '{target.runtime}' has no int8 path here")
        if target.precision == "int8" and target.runtime == "openvino" and importlib.util.find_spec("nncf") is None:
            raise SpecError(f"{where}.precision: int8 on openvino is quantized by NNCF, which is not installed "
                            f"here (pip install nncf)")
        if target.precision == "int8" and methods.METHODS.get(spec.method).data_free:
            raise SpecError(f"{where}.precision: int8 calibrates on training images, which a data-free study "
                            f"({spec.method}) must not see")
        if target.threads not in THREADS:
            raise SpecError(f"{where}.threads: must be {THREADS}, got {format_number(target.threads)}")
        if not target.batch:
            raise SpecError(f"{where}.batch: give at least one batch size, e.g. [1, 64]")
        for i, batch in enumerate(target.batch):
            if batch not in BATCH:
                raise SpecError(f"{where}.batch[{i}]: must be {BATCH}, got {format_number(batch)}")
        if len(set(target.batch)) < len(target.batch):
            raise SpecError(f"{where}.batch: {show(target.batch)} names a batch size twice")
        for resource, amount in (target.node.resources if target.node else {}).items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not amount > 0:
                raise SpecError(f"{where}.node.resources.{resource}: an amount above 0, got {show(amount)}")
        for label, value in (target.node.labels if target.node else {}).items():
            if not isinstance(value, str):
                raise SpecError(f"{where}.node.labels.{label}: a string, got {show(value)}")


def _resolve_target(objective: Objective, targets: dict[str, TargetSpec], where: str) -> None:
    """An objective naming a target: its metric becomes that target's latency column."""
    objective.batch = target_batch(objective.target, objective.batch, targets, where, "objective")
    column = target_metric(objective.target, objective.batch)
    if objective.metric not in ("latency", "latency_ms", column):
        raise SpecError(f"{where}.metric: an objective with a target is its latency (metric: latency), "
                        f"got '{objective.metric}'")
    objective.metric = column


def _check_objectives(spec: StudySpec) -> None:
    objectives = spec.search.objectives
    if not objectives:
        raise SpecError("search.objectives: give at least one, e.g. [{metric: val_acc, mode: max}]")
    known = {**EPOCH_METRICS, **FINAL_METRICS}
    for i, objective in enumerate(objectives):
        if objective.target is not None:
            _resolve_target(objective, spec.deploy.targets, f"search.objectives[{i}]")
            continue
        where = f"search.objectives[{i}].metric"
        if objective.metric in TEST_METRICS:
            raise SpecError(f"{where}: '{objective.metric}' is the test split, reported only; "
                            f"search on 'val_{objective.metric[5:]}' instead")
        if objective.metric not in known:
            raise SpecError(f"{where}: unknown metric '{objective.metric}'{did_you_mean(objective.metric, known)}")
    if objectives[0].metric not in EPOCH_METRICS:
        raise SpecError(f"search.objectives[0].metric: the first objective drives ASHA and must be "
                        f"reported every epoch ({', '.join(EPOCH_METRICS)}), got '{objectives[0].metric}'")


MLFLOW_OPTIONS = ("tracking_uri", "experiment_name", "tags")


def check_tracking(spec: StudySpec) -> None:
    """Options known, no password in a URI, and the tracker's package installed: before any work."""
    mlflow = spec.tracking.mlflow
    if mlflow is None:
        return
    for key in mlflow:
        if key not in MLFLOW_OPTIONS:
            raise SpecError(f"tracking.mlflow.{key}: unknown option (known: {', '.join(MLFLOW_OPTIONS)})")
    if "tags" in mlflow and not isinstance(mlflow["tags"], dict):
        raise SpecError(f"tracking.mlflow.tags: expected a mapping of tag names to values, got {mlflow['tags']!r}")
    if "tracking_uri" in mlflow:
        check_storage_url(str(mlflow["tracking_uri"]), "tracking.mlflow.tracking_uri")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise SpecError("tracking.mlflow: the mlflow package is not installed "
                        "(pip install 'compression-harness[tracking]', or mlflow-skinny)") from None
