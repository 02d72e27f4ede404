"""The harness installed from its wheel into a fresh environment, run from a folder with no
clone beside it: the README's main job by the shipped spec's name, its report and export."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command, cwd: Path, env: dict[str, str] | None = None) -> str:
    run = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(map(str, command))} exited {run.returncode}:\n{run.stdout[-3000:]}" \
                                f"\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.mark.slow
def test_the_wheel_runs_the_main_job_report_and_export_outside_a_clone(tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv is needed to build the wheel (.ci/run installs it)"
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    _run(uv, "build", "--wheel", "--out-dir", dist, cwd=ROOT)
    (wheel,) = dist.glob("*.whl")
    # The locked versions (no dev tools), so the environment is the one the tests ran in.
    requirements = tmp_path / "requirements.txt"
    _run(uv, "export", "--format", "requirements-txt", "--no-dev", "--no-emit-project", "--no-hashes",
         "--frozen", "-o", requirements, cwd=ROOT)
    _run(uv, "venv", "--python", sys.executable, venv, cwd=tmp_path)
    _run(uv, "pip", "install", "--python", venv / "bin" / "python", "-r", requirements, wheel, cwd=tmp_path)

    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HARNESS_CACHE=str(tmp_path / "cache"), RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    where = _run(venv / "bin" / "python", "-c", "import harness, methods, reports; "
                 "print(harness.__file__, methods.__file__, reports.__file__)", cwd=work, env=env)
    assert all(path.startswith(str(venv)) for path in where.split()), where

    harness = venv / "bin" / "harness"
    assert "kd " in _run(harness, "list", "--specs", cwd=work, env=env)
    out = _run(harness, "check", "kd", cwd=work, env=env)
    assert "spec: the shipped 'kd'" in out and str(venv) in out
    out = _run(harness, "sweep", "kd", "--num-samples", "2", "--set", "budget.epochs=4",
               "--set", "asha.grace_period=4", "--progress", "events", cwd=work, env=env)
    assert "done: 2 trials (2 completed); selected (best on validation): s0-" in out, out[-2000:]
    assert "to see them: harness report " in out
    _run(harness, "report", "studies/kd-digits", "-o", "report.html", "--no-images", cwd=work, env=env)
    assert "kd-digits" in (work / "report.html").read_text()
    out = _run(harness, "export", "studies/kd-digits", "--format", "onnx", cwd=work, env=env)
    assert "recomputed from the file" in out and list((work / "studies" / "kd-digits" / "export").glob("*.onnx"))
    assert sorted(p.name for p in work.iterdir()) == ["report.html", "studies"]
