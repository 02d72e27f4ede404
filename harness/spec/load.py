"""Reading a spec: a YAML file (or a study's ``study.json``) and ``--set`` overrides into
:class:`~harness.spec.schema.StudySpec`, validated completely before anything runs.

Every mapping is read into its dataclass; an unknown key, a value of the wrong type or a
malformed distribution raises :class:`SpecError` with the dotted path of the field and,
for names, the closest valid one; ``harness.spec.checks`` then checks what the fields mean.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from harness.errors import SpecError
from harness.spec.checks import check_semantics
from harness.spec.parents import check_parent, fill_parent
from harness.spec.schema import Objective, StudySpec, TargetSpec
from harness.spec.shipped import resolve_spec
from methods.knobs import coerce, show
from methods.registry import did_you_mean
from methods.study import Distribution, StudyError


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
    recorded = isinstance(raw.get("spec"), dict) and "method" not in raw  # a results folder's study.json
    if recorded:
        raw = _from_record(raw["spec"])
    for override in overrides:
        apply_override(raw, override)
    if code:
        raw["code"] = [*(raw.get("code") or []), *code] if isinstance(raw.get("code") or [], list) else raw["code"]
    chained = [] if recorded else [role for role in ("student", "teacher")
                                   if isinstance(raw.get(role), dict) and raw[role].get("from_study") is not None]
    for role in chained:  # a study.json holds its parents' networks already (and needs no parent to be read)
        raw[role] = fill_parent(raw[role], role)
    spec = parse_spec(raw)
    for role in chained:  # "best" becomes the trial it is, so that every later step reads the same one
        getattr(spec, role).trial = str(check_parent(getattr(spec, role), spec.dataset, role)["trial_id"])
    return spec


def searched_width(raw: dict[str, Any]) -> None:
    """``student.width: {uniform: [0.25, 1.0]}`` is searched as the knob ``student.width`` (where
    study.json keeps it); the student's own width becomes the widest drawn, whose shapes every
    trial's narrower network fits into."""
    student, search = raw.get("student"), raw.get("search")
    search = {} if search is None else search
    if not isinstance(student, dict) or not isinstance(search, dict) or not isinstance(search.get("space", {}), dict):
        return  # said by the parser, at its own path
    space = dict(search.get("space", {}))
    if isinstance(student.get("width"), dict):
        if "student.width" in space:
            raise SpecError("student.width: searched twice (in student: and in search.space); keep one")
        space["student.width"] = student["width"]
    if not isinstance(space.get("student.width"), dict):
        return
    drawn = _space_entry(space["student.width"], "student.width")
    numbers = [a for a in drawn.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    raw["search"] = {**search, "space": space}
    raw["student"] = {**student, "width": max(numbers) if numbers else student.get("width")}


def spec_file(path: str | Path) -> Path:
    """The file a spec argument names: itself, a results folder's ``study.json``, or a shipped
    spec by name (``kd``: harness.spec.shipped) when no such path exists."""
    path = resolve_spec(path)[0]
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
            name: ({value["kind"]: value["args"]} if isinstance(value, dict) and set(value) == {"kind", "args"}
                   else value)
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
    raw = dict(raw)
    searched_width(raw)
    spec = _build(StudySpec, raw, "")
    try:
        check_semantics(spec)
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
        if kind is TargetSpec and isinstance(value, dict) and not isinstance(value.get("batch", []), list):
            value = {**value, "batch": [value["batch"]]}  # one batch size, written as a number
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
        _, item = typing.get_args(kind)
        if dataclasses.is_dataclass(item):  # named entries (deploy.targets)
            return {name: _coerce(item, v, _join(path, name)) for name, v in value.items()}
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


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
