"""What ``harness list`` prints: the registered methods with their knobs, models and data sets,
as text, JSON or the Markdown knob tables of docs/methods.md."""
from __future__ import annotations

import json
import sys
from dataclasses import MISSING, fields
from typing import Any

import methods
from harness.data.datasets import DATASETS
from harness.networks.zoo import MODELS


def knob_rows(method: type) -> list[dict[str, Any]]:
    """One dict per knob: name, type, default, what it may take, and what it does."""
    choices, bounds = method.param_choices(), method.param_bounds()
    rows = []
    for f in fields(method.Params):
        kind = method.param_type(f.name).__name__
        optional = type(None) in method._param_options(f.name)
        named = list(choices.get(f.name, ())) or None
        allowed = (", ".join(map(str, named)) if named
                   else str(bounds[f.name]) if f.name in bounds else "any text" if kind == "str" else "any")
        rows.append({"name": f.name, "type": kind + (" or null" if optional else ""),
                     "default": None if f.default is MISSING else f.default, "choices": named,
                     "allowed": allowed, "help": f.metadata.get("help", "")})
    return rows


def summary(method: type) -> str:
    """The first line of the method's module docstring."""
    doc = (sys.modules[method.__module__].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def describe(installed: bool = True) -> dict[str, Any]:
    """Our methods, then (with ``installed``) those installed packages declare in the
    ``compression_harness.methods`` entry-point group, marked with their import path."""
    names = [*methods.METHODS.names(), *(sorted(methods.METHODS.installed()) if installed else ())]
    return {
        "methods": [{"name": name, "family": cls.family, "data_free": cls.data_free,
                     "needs_teacher": cls.needs_teacher, "class": f"{cls.__module__}.{cls.__qualname__}",
                     "installed": methods.METHODS.installed().get(name),
                     "summary": summary(cls), "knobs": knob_rows(cls)}
                    for name, cls in ((n, methods.METHODS.get(n, field="method")) for n in names)],
        "models": MODELS.names(),
        "datasets": DATASETS.names(),
    }


def shown(value: Any) -> str:
    """A value as a spec writes it."""
    return "null" if value is None else "''" if value == "" else str(value)


def text() -> str:
    lines = []
    for method in describe()["methods"]:
        flag = (" (data-free)" if method["data_free"] else "") + (
            f" (installed: {method['installed']})" if method["installed"] else "")
        knobs = ", ".join(f"{k['name']}={shown(k['default'])}"
                          + (f" ({'|'.join(map(str, k['choices']))})" if k["choices"] else "")
                          for k in method["knobs"])
        lines.append(f"method   {method['name']}{flag}: knobs (defaults) {knobs}")
    lines += [f"models   {', '.join(MODELS.names())}", f"datasets {', '.join(DATASETS.names())}"]
    return "\n".join(lines) + "\n"


def json_text() -> str:
    return json.dumps(describe(), indent=2) + "\n"


def markdown() -> str:
    """Per method of ours, a table of its knobs: the generated part of docs/methods.md."""
    out = []
    for method in describe(installed=False)["methods"]:
        out += [f"### `{method['name']}` ({method['family']})", "",
                "| knob | type | default | allowed | what it does |", "|---|---|---|---|---|"]
        out += [f"| `{k['name']}` | {k['type']} | {shown(k['default'])} | {k['allowed']} | {k['help']} |"
                for k in method["knobs"]]
        out.append("")
    return "\n".join(out)


def specs_text() -> str:
    """The shipped specs, a line each: name and what the study is."""
    from harness.spec.shipped import shipped_specs, summary

    specs = shipped_specs()
    if not specs:
        return "no specs ship with this installation\n"
    width = max(map(len, specs))
    lines = [f"{name:<{width}}  {summary(path)}" for name, path in specs.items()]
    return "\n".join(["Shipped study specs (`harness sweep NAME`, `harness init NAME` for a copy to edit):",
                      *lines]) + "\n"
