"""The study spec: a YAML file, validated completely before anything runs.

Every mapping is read into a dataclass below; an unknown key, a value of the
wrong type or a malformed distribution raises :class:`SpecError` with the
dotted path of the field and, for names, the closest valid one.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from harness.errors import SpecError
from methods.knobs import COUNT, Bounds, coerce, format_number, show
from methods.registry import did_you_mean
from methods.study import Distribution, Network, StudyError, StudyView

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
    model: str  # a zoo name, torchvision:NAME or package.module:function (harness/networks.py)
    width: float = 1.0  # zoo models only
    kwargs: dict[str, Any] = field(default_factory=dict)  # a factory's own arguments
    features: str | None = None  # outside the zoo: the node that ends the features, for feature methods


@dataclass
class TeacherSpec(ModelSpec):
    checkpoint: str | None = None  # a state_dict file; otherwise trained once and cached
    seed: int = 0
    recipe: dict[str, Any] = field(default_factory=dict)  # scratch knobs and ``epochs``


@dataclass
class Objective:
    metric: str
    mode: str  # max | min


@dataclass
class SearchSpec:
    space: dict[str, Any] = field(default_factory=dict)  # name -> Distribution or a fixed value
    objectives: list[Objective] = field(default_factory=lambda: [Objective("val_acc", "max")])
    searcher: str = "auto"  # auto | tpe | nsga2 | random
    num_samples: int = 8
    max_concurrent: int | None = None  # default: as many trials as the resources fit
    startup_trials: int | None = None  # TPE's random trials before it models; default from num_samples
    storage: str | None = None  # an Optuna storage URL or journal file; default: the study's optuna.journal


@dataclass
class AshaSpec:
    grace_period: int = 1
    reduction_factor: float = 2.0
    stop_at_chance: bool = True  # from the grace period on, also stop a trial no better than guessing


@dataclass
class TrackingSpec:
    mlflow: dict[str, Any] | None = None  # tracking_uri, experiment_name, tags (harness.tracking)
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
    # searches have ended, each distinct network once (harness/remeasure.py); 0 keeps the
    # figures taken in the trial. 5 rounds: the range of the rounds is a 94% interval.
    rounds: int = 5
    # A network whose interval is wider than this fraction of its median is measured again,
    # up to `attempts` times in all, and flagged noisy if it stays wider (harness/latency.py).
    max_spread: float = 0.25
    attempts: int = 3


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

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included (study.json's ``spec``; ``load_spec`` reads it back)."""
        return dataclasses.asdict(self)


# --- loading -------------------------------------------------------------------------

def load_spec(path: str | Path, overrides: list[str] = (), code: list[str] = ()) -> StudySpec:
    """Read a YAML spec, apply ``key=value`` overrides and extra ``code`` folders, validate
    everything.

    A results folder, or its ``study.json``, gives the spec that study ran
    with, so a study can be run again from its results alone.
    """
    path = spec_file(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"spec file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec file '{path}' cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    raw = read_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping (study:, method:, ...)")
    if isinstance(raw.get("spec"), dict) and "method" not in raw:  # a results folder's study.json
        raw = _from_record(raw["spec"])
    for override in overrides:
        apply_override(raw, override)
    if code:
        raw["code"] = [*(raw.get("code") or []), *code] if isinstance(raw.get("code") or [], list) else raw["code"]
    return parse_spec(raw)


def spec_file(path: str | Path) -> Path:
    """The file a spec argument names: itself, or a results folder's ``study.json``."""
    path = Path(path)
    if not path.is_dir():
        return path
    if not (path / "study.json").is_file():
        raise SpecError(f"'{path}' is a folder without a study.json; give a spec file or a study's results folder")
    return path / "study.json"


def _from_record(record: dict[str, Any]) -> dict[str, Any]:
    """``StudySpec.to_dict()`` as a spec: distributions back to ``{kind: [args]}``."""
    search = record.get("search")
    if isinstance(search, dict) and isinstance(search.get("space"), dict):
        search["space"] = {
            name: {value["kind"]: value["args"]} if isinstance(value, dict) and set(value) == {"kind", "args"} else value
            for name, value in search["space"].items()}
    return record


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # a complex key: YAML refuses the unhashable ones itself
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{show(key)} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, where: str) -> Any:
    """A YAML document, or one SpecError line saying where and what is wrong with it."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SpecError(f"{where}: not valid YAML{line}: {problem}") from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """``search.num_samples=4``: set a dotted key; the value is read as YAML."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise SpecError(f"--set '{override}': expected KEY=VALUE, e.g. search.num_samples=4")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError(f"--set {key}: '{part}' is not a mapping")
        node = child
    node[parts[-1]] = read_yaml(value, f"--set {key}")


def parse_spec(raw: dict[str, Any]) -> StudySpec:
    spec = _build(StudySpec, raw, "")
    try:
        _check_semantics(spec)
    except StudyError as exc:  # a registry's unknown name, or a method's own check
        raise SpecError(str(exc)) from None
    return spec


def check_sweep(spec: StudySpec) -> None:
    """What a sweep of a valid spec also needs (``harness check`` and ``harness sweep``)."""
    if not spec.searched_params() and spec.search.num_samples > 1:
        # A trial's torch seed is its study seed: the trials would repeat one run.
        raise SpecError(f"search.space: every knob is fixed, so the {spec.search.num_samples} trials of a seed "
                        f"would be the same run; search at least one knob, or set search.num_samples: 1 "
                        f"(one run per seed)")


def study_view(spec: StudySpec) -> StudyView:
    """What a method may check of the study (``Method.check_spec``)."""
    def network(model: ModelSpec) -> Network:
        return Network(model.model, model.width, tuple(sorted(model.kwargs.items())))

    teacher = spec.teacher and network(spec.teacher)
    return StudyView(student=network(spec.student), epochs=spec.budget.epochs,
                     teacher=teacher, substitute=spec.dataset.substitute, knobs=dict(spec.search.space))


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"{path or 'spec'}: expected a mapping, got {show(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise SpecError(f"{_join(path, key)}: unknown key{did_you_mean(key, names)}")
    values = {}
    for f in dataclasses.fields(cls):
        where = _join(path, f.name)
        if f.name in data:
            values[f.name] = _coerce(hints[f.name], data[f.name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}: required field is missing")
    return cls(**values)


def _coerce(kind: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        return _coerce(next(o for o in options if o is not type(None)), value, path)
    if dataclasses.is_dataclass(kind):
        if kind is Objective and isinstance(value, dict):
            return _objective(value, path)
        return _build(kind, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(f"{path}: expected a list, got {show(value)}")
        (item,) = typing.get_args(kind)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: expected a mapping, got {show(value)}")
        if path.endswith("search.space"):
            return {name: _space_entry(v, _join(path, name)) for name, v in value.items()}
        return dict(value)
    try:
        return coerce(kind, value)  # the same rule as a method's knobs
    except ValueError as exc:
        raise SpecError(f"{path}: {exc}") from None


def _objective(value: dict[str, Any], path: str) -> Objective:
    objective = _build(Objective, value, path)
    if objective.mode not in ("max", "min"):
        raise SpecError(f"{path}.mode: must be 'max' or 'min', got {show(objective.mode)}")
    return objective


DISTRIBUTIONS = ("uniform", "loguniform", "int", "categorical")


def _space_entry(value: Any, path: str) -> Any:
    """A fixed value, or a one-key mapping ``{kind: [args]}``."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise SpecError(f"{path}: a distribution is one key of {', '.join(DISTRIBUTIONS)}, "
                        f"e.g. {{loguniform: [1.0e-3, 0.1]}}; got {show(value)}")
    (kind, args), = value.items()
    if kind not in DISTRIBUTIONS:
        raise SpecError(f"{path}: unknown distribution '{kind}'{did_you_mean(kind, DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise SpecError(f"{path}.{kind}: expected a list, e.g. [low, high]; got {show(args)}")
    if kind == "categorical":
        return Distribution(kind, list(args))
    if len(args) != 2:
        raise SpecError(f"{path}.{kind}: expected [low, high], got {show(args)}")
    low, high = (_coerce(int if kind == "int" else float, a, f"{path}.{kind}") for a in args)
    if not low < high:
        raise SpecError(f"{path}.{kind}: low must be below high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{path}.loguniform: bounds must be positive, got [{low}, {high}]")
    return Distribution(kind, [low, high])


def _check_semantics(spec: StudySpec) -> None:
    """Cross-field checks: registry names, knobs of the method, objectives."""
    import methods
    from harness.data import AUGMENTATIONS, dataset_loader, loader_options
    from harness.method_checks import check_method
    from harness.user_code import use_code

    spec.code = use_code(spec.code)  # before any name below is imported
    method = methods.METHODS.get(spec.method, field="method")
    if spec.method not in methods.METHODS:  # from outside the project (tests/test_methods.py checks ours)
        check_method(method, spec.method)
    dataset_loader(spec.dataset.name, "dataset.name")

    for option in set(spec.dataset.options()) - loader_options(spec.dataset.name):
        raise SpecError(f"dataset.{option}: '{spec.dataset.name}' does not take it (an image folder's option)")
    if spec.dataset.substitute is not None:
        dataset_loader(spec.dataset.substitute, "dataset.substitute")
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
    for name, value in spec.search.space.items():
        if name not in knobs:
            raise SpecError(f"search.space.{name}: '{spec.method}' has no knob '{name}'"
                            f"{did_you_mean(name, knobs)}")
        _check_knob(method, name, value, choices.get(name), f"search.space.{name}")
    method.check_spec(study_view(spec))  # the method's own cross-knob checks, on values of the right types
    searchers = ("auto", "tpe", "nsga2", "random")
    if spec.search.searcher not in searchers:
        raise SpecError(f"search.searcher: unknown searcher '{spec.search.searcher}'"
                        f"{did_you_mean(spec.search.searcher, searchers)}")
    _check_objectives(spec.search.objectives)
    _check_ranges(spec)
    if spec.search.storage is not None:
        from harness.optuna_storage import check_storage_url

        check_storage_url(spec.search.storage)
    from harness.tracking import check_tracking

    check_tracking(spec)
    from harness.location import check_uri

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
WIDTH = Bounds(0, 64, low_open=True)
MAX_TRIALS_PER_SEED = 10_000
MAX_SEEDS = 100


def _check_ranges(spec: StudySpec) -> None:
    """Every number of the spec within what it can mean."""
    teacher = spec.teacher
    ranges = [
        ("budget.epochs", spec.budget.epochs, COUNT),
        ("search.num_samples", spec.search.num_samples, Bounds(1, MAX_TRIALS_PER_SEED)),
        ("search.startup_trials", spec.search.startup_trials, COUNT),
        ("search.max_concurrent", spec.search.max_concurrent, COUNT),
        ("asha.grace_period", spec.asha.grace_period, COUNT),
        ("asha.reduction_factor", spec.asha.reduction_factor, Bounds(1, low_open=True)),
        ("resources.cpu", spec.resources.cpu, Bounds(0, low_open=True)),
        ("resources.gpu", spec.resources.gpu, Bounds(0)),
        ("resources.retries", spec.resources.retries, Bounds(0)),
        ("measure.batch_size", spec.measure.batch_size, COUNT),
        ("measure.warmup", spec.measure.warmup, Bounds(0)),
        ("measure.repeats", spec.measure.repeats, COUNT),
        ("measure.rounds", spec.measure.rounds, Bounds(0)),
        ("measure.max_spread", spec.measure.max_spread, Bounds(0, low_open=True)),
        ("measure.attempts", spec.measure.attempts, COUNT),
        ("dataset.split_seed", spec.dataset.split_seed, SEED),
        ("dataset.image_size", spec.dataset.image_size, Bounds(1, 4096)),
        ("dataset.memory_gb", spec.dataset.memory_gb, Bounds(0, low_open=True)),
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
    from harness.networks import factory, is_zoo

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
                coerce(int, value, COUNT)
            except ValueError as exc:
                raise SpecError(f"{path}: {exc}") from None
        else:
            _check_knob(Scratch, key, value, None, path)


def _check_objectives(objectives: list[Objective]) -> None:
    if not objectives:
        raise SpecError("search.objectives: give at least one, e.g. [{metric: val_acc, mode: max}]")
    known = {**EPOCH_METRICS, **FINAL_METRICS}
    for i, objective in enumerate(objectives):
        where = f"search.objectives[{i}].metric"
        if objective.metric in TEST_METRICS:
            raise SpecError(f"{where}: '{objective.metric}' is the test split, reported only; "
                            f"search on 'val_{objective.metric[5:]}' instead")
        if objective.metric not in known:
            raise SpecError(f"{where}: unknown metric '{objective.metric}'{did_you_mean(objective.metric, known)}")
    if objectives[0].metric not in EPOCH_METRICS:
        raise SpecError(f"search.objectives[0].metric: the first objective drives ASHA and must be "
                        f"reported every epoch ({', '.join(EPOCH_METRICS)}), got '{objectives[0].metric}'")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
