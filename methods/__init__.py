"""Compression methods. Each module in this package registers one method with
``@register_method`` (shared helpers register none); importing the package
imports them all, so a new method is one new module here (plus its YAML in
``search_spaces/``)."""
from __future__ import annotations

import importlib
import pkgutil

from methods.base import METHODS, Method, MethodContext, SupervisedMethod, TrainParams, register_method

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "MethodContext", "SupervisedMethod", "TrainParams", "register_method"]
