"""The spec's ``code:`` folders: the user's packages made importable here (Ray ships them
to the workers through its runtime environment)."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.errors import SpecError


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
