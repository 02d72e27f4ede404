"""The suite's own rules (tests/conftest.py): a skip fails under CI, and slow tests run only
when a -m expression names them, composing with the other markers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SAMPLE = '''
import pytest

def test_skips():
    pytest.skip("no browser here")

@pytest.mark.slow
def test_slow():
    pass

@pytest.mark.cluster
def test_cluster():
    pass

@pytest.mark.slow
@pytest.mark.cluster
def test_slow_cluster():
    pass
'''


def _pytest(folder: Path, *args: str, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(HERE.parent)}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                           "-o", "markers=slow\ncluster", *args, str(folder / "test_sample.py")],
                          cwd=folder, env=env, capture_output=True, text=True)


def test_a_skip_fails_under_ci_and_slow_tests_run_only_when_named(tmp_path):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    local = _pytest(tmp_path, "-k", "skips", ci=False)
    ci = _pytest(tmp_path, "-k", "skips", ci=True)
    runs = {expr: _pytest(tmp_path, *(["-m", expr] if expr else []), ci=False).stdout
            for expr in ("", "cluster", "not cluster", "slow", "slow and cluster")}
    assert "1 skipped" in local.stdout and local.returncode == 0
    assert ci.returncode == 1 and "skipped under CI, which must run every test: Skipped: no browser here" in ci.stdout

    def passed(out: str) -> set[str]:
        return {line.split("::")[1] for line in out.splitlines() if line.startswith("PASSED ")}

    assert passed(runs[""]) == {"test_cluster"}
    assert passed(runs["cluster"]) == {"test_cluster"}
    assert passed(runs["not cluster"]) == set()  # the skip is not a pass; no slow test slips in
    assert passed(runs["slow"]) == {"test_slow", "test_slow_cluster"}
    assert passed(runs["slow and cluster"]) == {"test_slow_cluster"}
