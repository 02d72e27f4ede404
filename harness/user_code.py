"""The user's own code: package folders made importable here (Ray ships them to the
workers), and functions named ``package.module:function`` in a spec."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from harness.errors import SpecError
from methods.registry import import_attribute
from methods.study import StudyError


def use_code(folders: list[str]) -> list[str]:
    """Make the user's package folders importable here (the workers get them through Ray's
    runtime environment); their absolute paths, or one error line."""
    resolved = []
    for i, folder in enumerate(folders):
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise SpecError(f"code[{i}]: '{folder}' is not a folder (give the folder of a package: "
                            f"for `mynets.small:build`, the folder mynets)")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        resolved.append(str(path))
    return resolved


def import_function(name: str, field: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names, or one error line naming ``field``."""
    module_name, _, attribute = name.partition(":")
    try:
        function = import_attribute(name, f"{field}: ")
    except StudyError as exc:
        raise SpecError(str(exc)) from None
    if not callable(function):
        raise SpecError(f"{field}: '{module_name}' has no function '{attribute}'")
    return function
