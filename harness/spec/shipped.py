"""The specs that travel with the package: ``search_spaces/`` (digits studies at the top,
``mnist/``, ``paper/`` and ``examples/`` below), so that an installed harness runs
``harness sweep kd`` with no clone beside it.

A wheel holds them as ``harness/search_spaces/`` (pyproject.toml's force-include); a
clone or an editable install reads the repository's ``search_spaces/``. A shipped spec is
named by its path there without ``.yaml``: ``kd``, ``mnist/kd``, ``examples/imagefolder``.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from harness.errors import SpecError

_PACKAGE = Path(__file__).resolve().parents[1]


def shipped_root() -> Path | None:
    """Where the shipped specs are: inside the installed package, else the clone's."""
    for root in (_PACKAGE / "search_spaces", _PACKAGE.parent / "search_spaces"):
        if root.is_dir():
            return root
    return None


def shipped_specs() -> dict[str, Path]:
    """Name -> file, in name order."""
    root = shipped_root()
    if root is None:
        return {}
    return {path.relative_to(root).with_suffix("").as_posix(): path for path in sorted(root.rglob("*.yaml"))}


def shipped_spec(name: str) -> Path | None:
    """The shipped spec ``name`` names (``kd``, ``kd.yaml`` or ``mnist/kd``), or None."""
    return shipped_specs().get(name.removesuffix(".yaml"))


def resolve_spec(argument: str | Path) -> tuple[Path, str | None]:
    """The file a spec argument names, and the shipped spec's name when it is one: a path that
    exists is itself (a file of yours wins over a shipped spec of the same name); else a
    shipped name; else one error line with the closest names."""
    path = Path(argument)
    if path.exists():
        return path, None
    found = shipped_spec(str(argument))
    if found is not None:
        return found, str(argument).removesuffix(".yaml")
    name = str(argument).removesuffix(".yaml")
    close = difflib.get_close_matches(name, list(shipped_specs()), n=1, cutoff=0.6)
    hint = f" (did you mean the shipped '{close[0]}'?)" if close else " (`harness list --specs` lists those)"
    raise SpecError(f"spec file '{argument}' does not exist, and no shipped spec has that name{hint}")


def summary(path: Path, width: int = 90) -> str:
    """What a shipped study is: the first sentence of its opening comment, and its data set."""
    import yaml

    text = path.read_text()
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    sentence = " ".join(comment).split(". ")[0].rstrip(".")
    if len(sentence) > width:
        sentence = sentence[:width - 3].rsplit(" ", 1)[0] + "..."
    dataset = ((yaml.safe_load(text) or {}).get("dataset") or {}).get("name", "digits")
    return f"[{dataset}] {sentence}"
