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
