"""What every benchmark script shares: its common options, the machine and versions it ran on,
the figures it promises, and those figures as JSON.

A script names the figures it promises (``PROMISES``: name -> unit) and records each as it
measures it (:meth:`Run.figure`, with the keys that tell one figure of a name from another:
``trials=1000, side="harness"``); its tables for benchmarks/README.md go in :meth:`Run.table`.
:meth:`Run.finish` prints every figure (``name[keys]: value unit``), refuses a run that left a
promised figure out, and with ``--json FILE`` writes the figures and tables with the command,
the date, the machine (cores, CPU model, memory, GPU or none) and the versions of Python,
torch, Ray, Optuna and the project: what ``benchmarks/tables.py`` puts into the README.

``--smoke`` asks for the smallest sizes that still run every code path (seconds);
tests/test_benchmarks.py runs each script so and checks its promises.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]


def common_options(parser: argparse.ArgumentParser, seed: bool = False) -> argparse.ArgumentParser:
    """``--smoke``, ``--json FILE`` and, where a script has one random choice to make, ``--seed``."""
    parser.add_argument("--smoke", action="store_true",
                        help="the smallest sizes that run every code path (seconds), to check the script works")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the figures with the command, date, machine and versions to FILE")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="the seed of the run's random choices (default 0)")
    return parser


def fail(message: str, status: int = 2) -> NoReturn:
    """One error line and a non-zero exit: 2 for bad input, 1 for a run that failed."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def side_failed(side: str, cause: str) -> NoReturn:
    """A comparison whose baseline or subject failed: its figures would mean nothing."""
    fail(f"the {side} side failed: {cause}; no figure is printed for a comparison with a failed side", 1)


def harness(*args: str, what: str) -> tuple[float, str]:
    """``python -m harness ARGS`` in the project, as a user runs it: its seconds and its output.

    A failing command ends the benchmark (exit 1) with its last lines and ``what`` failed.
    """
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{done.stdout[-2000:]}{done.stderr[-2000:]}", file=sys.stderr)
        fail(f"{what} failed (exit {done.returncode}); its last lines are above", 1)
    return time.monotonic() - started, done.stdout


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory (GiB) and GPU (or none) of this machine."""
    cpu, memory = platform.processor() or platform.machine(), None
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        memory = next(round(int(line.split()[1]) / 2**20) for line in open("/proc/meminfo")
                      if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": memory, "gpu": _gpu()}


def _gpu() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        return "none"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name, package in (("torch", "torch"), ("ray", "ray"), ("optuna", "optuna"), ("project", "compression-harness")):
        try:
            out[name] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe(info: dict[str, Any]) -> str:
    """A run's machine and date in words, as benchmarks/README.md gives them."""
    m = info["machine"]
    memory = f", {m['memory_gib']} GiB" if m.get("memory_gib") else ""
    gpu = "no GPU" if m.get("gpu", "none") == "none" else m["gpu"]
    return f"{m['cpu']}, {m['cores']} cores{memory}, {gpu}; {info['date'][:10]}"


class Run:
    """One run of a benchmark script: its figures, its tables, and what it promised."""

    def __init__(self, script: str, promises: dict[str, str], args: argparse.Namespace) -> None:
        self.script, self.promises, self.args = Path(script).stem, promises, args
        self.figures: list[dict[str, Any]] = []
        self.tables: dict[str, dict[str, Any]] = {}
        self.command = shlex.join(["python", os.path.relpath(script, ROOT), *sys.argv[1:]])
        self.started = time.perf_counter()

    def figure(self, name: str, value: Any, **keys: Any) -> Any:
        """Record one promised figure; ``keys`` tell it from others of its name. Returns ``value``."""
        if name not in self.promises:
            raise KeyError(f"{self.script}: figure '{name}' is not in its PROMISES")
        self.figures.append({"name": name, "value": value, "unit": self.promises[name], **keys})
        return value

    def table(self, name: str, header: list[str], rows: list[list[Any]]) -> None:
        """A table for benchmarks/README.md (cells as they are shown), under ``name``."""
        self.tables[name] = {"header": header, "rows": [[str(cell) for cell in row] for row in rows]}

    def finish(self) -> None:
        """Print every figure; fail if one promised is missing; write ``--json``."""
        print("\nfigures:")
        for f in self.figures:
            keys = {k: v for k, v in f.items() if k not in ("name", "value", "unit")}
            where = f"[{', '.join(f'{k}={v}' for k, v in keys.items())}]" if keys else ""
            value = f"{f['value']:.4g}" if isinstance(f["value"], float) else str(f["value"])
            print(f"  {f['name']}{where}: {value} {f['unit']}".rstrip())
        missing = sorted(set(self.promises) - {f["name"] for f in self.figures})
        if missing:
            fail(f"{self.script}: no figure for {', '.join(missing)}, which it promises", 1)
        seconds = time.perf_counter() - self.started
        print(f"{self.script}: {len(self.figures)} figures in {seconds:.0f} s")
        if getattr(self.args, "json", None):
            info = {"script": self.script, "command": self.command,
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 1),
                    "smoke": bool(getattr(self.args, "smoke", False)), "machine": machine(), "versions": versions(),
                    "promises": self.promises, "figures": self.figures, "tables": self.tables}
            Path(self.args.json).write_text(json.dumps(info, indent=1, default=_plain) + "\n")
            print(f"figures written to {self.args.json}")


def _plain(value: Any) -> Any:
    """NumPy numbers and other scalars as JSON has them."""
    return value.item() if hasattr(value, "item") else str(value)
