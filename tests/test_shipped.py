"""The harness as a user who installed it meets it: specs that ship by name, a copy to edit,
and a clear line when another package takes the name `methods` or `reports`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from harness.cli.main import main
from harness.spec.shipped import shipped_specs

ROOT = Path(__file__).resolve().parents[1]


def test_every_spec_of_search_spaces_ships_by_name():
    specs = shipped_specs()
    files = {p.relative_to(ROOT / "search_spaces").with_suffix("").as_posix()
             for p in (ROOT / "search_spaces").rglob("*.yaml")}
    assert set(specs) == files and {"kd", "c2s2", "mnist/kd", "examples/imagefolder"} <= files


def test_a_bare_name_runs_the_shipped_spec_and_says_which_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "kd", "--storage", str(tmp_path / "studies")]) == 0
    out = capsys.readouterr().out
    assert f"spec: the shipped 'kd' ({ROOT / 'search_spaces' / 'kd.yaml'})" in out
    assert "'kd-digits'" in out

    # A file of that name is the user's, and wins.
    mine = yaml.safe_load((ROOT / "search_spaces" / "kd.yaml").read_text()) | {"study": "mine"}
    (tmp_path / "kd").write_text(yaml.safe_dump(mine))
    assert main(["check", "kd", "--storage", str(tmp_path / "studies")]) == 0
    out = capsys.readouterr().out
    assert "shipped" not in out and "'mine'" in out


def test_a_name_that_is_neither_a_file_nor_shipped_is_one_line_with_the_closest(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "kdd"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: spec file 'kdd' does not exist, and no shipped spec has that name "
                   "(did you mean the shipped 'kd'?)\n")
    assert not (tmp_path / "studies").exists()


def test_list_specs_names_each_with_its_data_and_init_writes_a_copy(tmp_path, capsys, monkeypatch):
    assert main(["list", "--specs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["kd", "[digits]"] for line in lines)
    assert any(line.split()[:2] == ["mnist/kd", "[mnist]"] for line in lines)

    monkeypatch.chdir(tmp_path)
    assert main(["init", "mnist/kd"]) == 0
    assert (tmp_path / "kd.yaml").read_text() == (ROOT / "search_spaces" / "mnist" / "kd.yaml").read_text()
    assert "kd.yaml: a copy of the shipped 'mnist/kd'" in capsys.readouterr().out
    assert main(["init", "kd"]) == 2  # kd.yaml is there now: never overwritten
    assert capsys.readouterr().err == "error: kd.yaml: already exists; give another file with -o\n"
    assert main(["init", "kd", "-o", str(tmp_path / "mine.yaml")]) == 0
    assert main(["check", str(tmp_path / "mine.yaml"), "--storage", str(tmp_path / "studies")]) == 0


def _harness(*args: str, cwd: Path, pythonpath: str | None = None, module: bool = False):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "harness"] if module else [str(Path(sys.executable).parent / "harness")]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_another_package_named_methods_or_reports_is_one_line_not_a_wrong_import(tmp_path):
    # A project of the user's with its own `methods/` package, where they run `python -m harness`.
    project = tmp_path / "project"
    (project / "methods").mkdir(parents=True)
    (project / "methods" / "__init__.py").write_text("raise RuntimeError('the user project was imported')\n")
    run = _harness("list", cwd=project, module=True)
    assert run.returncode == 2 and run.stdout == "", run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert f"'methods' imports from {project / 'methods' / '__init__.py'}, not from {ROOT / 'methods'}" in run.stderr

    # Another installed distribution providing a top-level `reports`, ahead on the path.
    site = tmp_path / "site"
    (site / "reports").mkdir(parents=True)
    (site / "reports" / "__init__.py").write_text("")
    info = site / "other_reports-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-reports\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("reports\n")
    run = _harness("list", cwd=tmp_path, pythonpath=str(site))
    assert run.returncode == 2 and f"'reports' imports from {site / 'reports' / '__init__.py'}" in run.stderr

    # Elsewhere, the console script ignores the working folder: ours are found.
    run = _harness("list", "--specs", cwd=project)
    assert run.returncode == 0 and "kd" in run.stdout, run.stderr
