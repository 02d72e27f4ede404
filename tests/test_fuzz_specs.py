"""Malformed specs and --set values, generated from the spec's own fields: each is one
error line with exit status 2, no traceback, in bounded time and memory, and leaves the
storage folder's earlier results as they were."""
from __future__ import annotations

import dataclasses
import hashlib
import time
import tracemalloc
import typing
from pathlib import Path

import pytest
import yaml

from harness.cli.main import main
from harness.spec.schema import StudySpec

BASE = {
    "study": "fuzz", "method": "kd", "dataset": {"name": "digits"},
    "teacher": {"model": "lenet5", "recipe": {"epochs": 2}},
    "student": {"model": "lenet5_half"},
    "search": {"num_samples": 2, "space": {"lr": {"loguniform": [0.01, 0.1]}}},
}
# A value of each kind that no field of another kind takes (text takes numbers as their text).
WRONG = {int: ["x", 1.5, True, [1]], float: ["fast", True, {"a": 1}], bool: ["maybe", 2], str: [[1], {"a": 1}],
         list: ["x", {"a": 1}], dict: ["x", [1, 2]]}


def wrong_values(kind) -> list:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, __import__("types").UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return [7, "x"]
    return WRONG.get(origin or kind, [])


def field_cases(cls=StudySpec, prefix="") -> list[tuple[str, object]]:
    """(dotted path, a value of the wrong kind) for every field of the spec, nested ones too."""
    cases = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        cases += [(path, value) for value in wrong_values(hints[f.name])]
        inner = hints[f.name]
        inner = next((a for a in typing.get_args(inner) if dataclasses.is_dataclass(a)), inner)
        if dataclasses.is_dataclass(inner) and typing.get_origin(hints[f.name]) is not list:  # objectives, limits
            cases += field_cases(inner, f"{path}.")
            cases.append((f"{path}.{f.name}x", 1))  # an unknown key one level down
    return cases


def alias_bomb(levels: int = 9) -> str:
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return yaml.safe_dump({k: v for k, v in BASE.items() if k != "search"}) + \
        f"search:\n  space:\n    tau: {{categorical: [{', '.join(items)}]}}\n"


SET_CASES = ["search.space.lr={loguniform: [0.1", "budget.epochs=\t3", "budget.epochs", "=3",
             "study.name=x", "search.space.lr={uniform: [1, 0]}", "search.space.lr={normal: [0, 1]}",
             "search.space.lr={categorical: []}", "search.space.tau={uniform: [1]}", "seeds=[-1]",
             "seeds=[0, 0]", "dataset.split_seed=-1", "search.max_concurrent=-3", "search.num_samples=1000000000",
             "student.width=0", "teacher.width=-1", "search.objectives=[{metric: test_acc, mode: max}]",
             "method=kdd", "search.space.temperature=2", "measure.repeats=0",
             "search.constraints=[{metric: latency, max: fast}]", "search.constraints=[{metric: params}]",
             "search.constraints=[{metric: macs, max: 1, speed: 2}]", "student.width={uniform: [0.5]}",
             "student.width={uniform: [1.0, 0.5]}"]
TEXT_CASES = {"unparsable": "study: [unclosed\n", "tabs": "study:\tx\n", "a list": "- study\n- method\n",
              "a scalar": "42\n", "duplicate key": yaml.safe_dump(BASE) + "method: scratch\n",
              "not text": "\udcff\n", "alias bomb": alias_bomb()}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """A storage folder holding earlier results of the study every case names."""
    root = tmp_path_factory.mktemp("studies")
    folder = root / BASE["study"]
    folder.mkdir()
    for name in ("trials.parquet", "epochs.parquet", "study.json"):
        (folder / name).write_bytes(f"earlier {name}".encode())
    return root


def cases() -> list:
    generated = [pytest.param({"yaml": yaml.safe_dump(_with(path, value)), "sets": [], "field": path},
                              id=f"{path}={value!r}") for path, value in field_cases()]
    sets = [pytest.param({"yaml": yaml.safe_dump(BASE), "sets": [s]}, id=f"--set {s}") for s in SET_CASES]
    texts = [pytest.param({"yaml": text, "sets": []}, id=name) for name, text in TEXT_CASES.items()]
    return generated + sets + texts


def _with(path: str, value: object) -> dict:
    import copy

    raw = copy.deepcopy(BASE)
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


ALL = cases()


def test_there_are_enough_cases():
    assert len(ALL) >= 40


@pytest.mark.parametrize("case", ALL)
def test_a_malformed_spec_is_one_line_exit_2_and_touches_nothing(case, storage, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(case["yaml"], errors="surrogateescape")
    before = snapshot(storage)
    args = ["sweep", str(spec), "--storage", str(storage)]
    for value in case["sets"]:
        args += ["--set", value]
    tracemalloc.start()
    started = time.monotonic()
    try:
        code = main(args)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    out = capsys.readouterr()
    assert code == 2, out
    assert out.err.startswith("error: ") and out.err.count("\n") == 1 and "Traceback" not in out.err + out.out
    assert elapsed < 5 and peak < 64 * 2**20, (elapsed, peak)
    assert snapshot(storage) == before
    if "field" in case:  # the line names the field the case broke
        assert out.err.startswith(f"error: {case['field']}"), out.err
