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
import importlib.util
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from methods.base import Method
from methods.knobs import show
from methods.study import StudyError


def check_method(cls: type[Method], name: str) -> None:
    """One :class:`StudyError` line for the first thing wrong with the method class."""
    for line in ray_imports(cls.__module__):
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


@functools.lru_cache(maxsize=None)
def ray_imports(module: str) -> tuple[str, ...]:
    """``file:line`` of every ``import ray...`` in the module and in the modules of its own
    top-level package that it imports, transitively (the code a trial of it runs)."""
    top = module.partition(".")[0]
    found, seen, queue = [], set(), [module]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _source(name)
        if path is None:
            continue  # a name imported from a module, not a module
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue  # what cannot be read cannot have been imported either
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                    if node.level else node.module or ""
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            if any(t == "ray" or t.startswith("ray.") for t in targets):
                found.append(f"{path}:{node.lineno}")
            queue += [t for t in targets if t.partition(".")[0] == top]
    return tuple(found)


def _source(module: str) -> Path | None:
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


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
