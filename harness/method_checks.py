"""The checks every method passes before a study of it runs, ours and the user's alike.

A method is plain PyTorch, testable in a plain loop: the harness owns Ray, so a method's
package may not import it (a method that reported to Tune itself would bypass the
protocol). Its knobs' defaults must lie within their own bounds and choices: a default
a spec could not give is a bug of the method, said before any trial, not a study of
trials run on a value the method itself forbids.
"""
from __future__ import annotations

import ast
import functools
import inspect
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from methods.base import Method
from methods.knobs import show
from methods.study import StudyError


def check_method(cls: type[Method], name: str) -> None:
    """One :class:`StudyError` line for the first thing wrong with the method class."""
    for line in ray_imports(_package_files(cls)):
        raise StudyError(f"method '{name}': {line} imports Ray; a method is plain PyTorch (the harness runs "
                         f"it under Ray Tune): remove the import")
    choices = cls.param_choices()
    for knob in fields(cls.Params):
        if knob.default is MISSING:
            raise StudyError(f"method '{name}': knob '{knob.name}' has no default; give it one with knob(default, ...)")
        try:
            cls.cast_param(knob.name, knob.default)  # the rule a spec's value meets
        except ValueError as exc:
            raise StudyError(f"method '{name}': the default of knob '{knob.name}' {exc}") from None
        if knob.name in choices and knob.default is not None and knob.default not in choices[knob.name]:
            raise StudyError(f"method '{name}': the default of knob '{knob.name}' is {show(knob.default)}, not one of "
                             f"its choices {show(list(choices[knob.name]))}")


def _package_files(cls: type) -> tuple[Path, ...]:
    """The source files of the package the class comes from (the module alone if it is top-level)."""
    module = sys.modules[cls.__module__]
    top = sys.modules.get(cls.__module__.partition(".")[0], module)
    if hasattr(top, "__path__"):
        return tuple(sorted(p for folder in top.__path__ for p in Path(folder).rglob("*.py")))
    source = inspect.getsourcefile(module)
    return (Path(source),) if source else ()


@functools.lru_cache(maxsize=None)
def ray_imports(files: tuple[Path, ...]) -> tuple[str, ...]:
    """``file:line`` of every ``import ray...`` / ``from ray... import`` in the files."""
    found = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue  # what cannot be read cannot have been imported either
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                found.append(f"{path}:{node.lineno}")
    return tuple(found)


class _FirstReport(Exception):
    pass


def check_first_report(spec, data, images: int = 64) -> None:
    """Run a method from outside the project up to its first report, on a few images on this
    machine's CPU, before Ray starts: a state its checkpoint cannot hold (methods.checkpoint)
    or a method that fails outright is one line now, not an error in every trial."""
    from dataclasses import replace

    from harness.networks import build_network
    from harness.spec import BudgetSpec
    from harness.trial import run_trial
    from methods.checkpoint import UnsavedState

    def few(split):
        return replace(split, x=split.x[:images], y=split.y[:images], index=split.index[:images])

    small = replace(data, train=few(data.train), val=few(data.val), test=few(data.test))
    tiny = replace(spec, budget=BudgetSpec(epochs=2), resources=replace(spec.resources, gpu=0.0, compile=False))
    teacher = (build_network(spec.teacher, data.num_classes, data.input_shape, "teacher").state_dict()
               if spec.teacher is not None else None)  # untrained: the shapes are what matter here

    def report(metrics, state):
        raise _FirstReport

    try:
        run_trial({}, tiny, spec.seeds[0], small, teacher, report, checkpoints=True)
    except _FirstReport:
        return
    except UnsavedState as exc:
        raise StudyError(f"method '{spec.method}': {exc}") from None
    except Exception as exc:  # the user's code may fail in any way
        cause = (str(exc).strip().splitlines() or [""])[-1]
        raise StudyError(f"method '{spec.method}' failed before its first report, run on {images} images "
                         f"before the study: {type(exc).__name__}: {cause}") from None
