"""Every benchmark script keeps running: its smoke mode exits 0 and prints every figure it
promises (names and units), in words and in its ``--json`` file; and the READMEs' generated
tables are those of the results files in benchmarks/results/."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.tables import BLOCK, PAGES

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared" / "datasets"
HELPERS = {"common.py", "tables.py"}  # shared code and the README's table writer, not benchmarks
NEEDS_MNIST = {"dafl_mnist.py", "pruning_mnist.py"}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in HELPERS)


def test_every_benchmark_script_has_the_common_options():
    for name in SCRIPTS:
        text = (BENCHMARKS / name).read_text()
        assert "common_options(" in text and "PROMISES" in text and "run.finish()" in text.replace("bench.", "run."), \
            name


def test_the_readme_tables_are_the_results_files():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "tables.py"), "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_the_smoke_mode_runs_and_prints_every_promised_figure(name, tmp_path):
    if name in NEEDS_MNIST and not (SHARED / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("needs the real MNIST in ../shared/datasets")
    out = tmp_path / "figures.json"
    env = {**os.environ, "HARNESS_DATA": str(SHARED), "HARNESS_CACHE": str(tmp_path / "cache"),
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), "--smoke", "--json", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    info = json.loads(out.read_text())
    assert info["smoke"] and info["promises"] and {"cores", "cpu", "memory_gib", "gpu"} <= set(info["machine"])
    assert {"python", "torch", "ray", "optuna", "project"} <= set(info["versions"])
    recorded = {(f["name"], f["unit"]) for f in info["figures"]}
    printed = done.stdout[done.stdout.rindex("\nfigures:"):]
    for figure, unit in info["promises"].items():
        assert (figure, unit) in recorded, figure
        assert any(line.strip().startswith(figure) and line.rstrip().endswith(unit)
                   for line in printed.splitlines()), figure
    assert readme_tables(Path(name).stem) <= set(info["tables"]), "a table the README shows is no longer written"


def readme_tables(script: str) -> set[str]:
    """The tables the READMEs take from results files that ``script`` wrote."""
    names = set()
    for block in (block for page in PAGES for block in BLOCK.finditer(page.read_text())):
        if json.loads((BENCHMARKS / "results" / f"{block['run']}.json").read_text())["script"] == script:
            names.add(block["name"])
    return names
