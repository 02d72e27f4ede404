"""The generated tables of benchmarks/README.md and README.md, from runs' figures saved as JSON in
benchmarks/results/.

A table sits between ``<!-- table: RUN/NAME -->`` and ``<!-- /table -->``: RUN is a file
``benchmarks/results/RUN.json`` written by a script's ``--json``, NAME one of its tables.
This script replaces what lies between the two marks with that table and a line naming the
run it came from (command, machine, date, versions); the prose around it is the README's own.

    uv run python benchmarks/tables.py [--check]

``--check`` changes nothing and exits 1 when a page differs from what it would write
(tests/test_benchmarks.py runs it).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import describe, fail  # noqa: E402

HERE = Path(__file__).resolve().parent
PAGES = (HERE.parent / "README.md", HERE / "README.md")  # the front door's results table, then the figures
RESULTS = HERE / "results"
BLOCK = re.compile(r"(<!-- table: (?P<run>[\w.-]+)/(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def render(run: str, name: str) -> str:
    path = RESULTS / f"{run}.json"
    if not path.is_file():
        fail(f"a table names {path.relative_to(HERE.parent)}, which does not exist")
    info = json.loads(path.read_text())
    if name not in info.get("tables", {}):
        fail(f"{path.name}: no table '{name}' (it has: {', '.join(info.get('tables', {})) or 'none'})")
    table = info["tables"][name]
    lines = ["| " + " | ".join(table["header"]) + " |", "|" + "---|" * len(table["header"])]
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    v = info["versions"]
    lines += ["", f"From `{info['command']}` ({describe(info)}; {info['seconds']:.0f} s; Python {v['python']}, "
                  f"torch {v['torch']}, Ray {v['ray']}, Optuna {v['optuna']}; "
                  f"`benchmarks/results/{run}.json`)."]
    return "\n".join(lines) + "\n"


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m["run"], m["name"]) + m.group(5), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is not what it would write")
    args = parser.parse_args()
    count, stale = 0, []
    for page in PAGES:
        text = page.read_text()
        new = regenerate(text)
        count += len(BLOCK.findall(text))
        if new != text:
            stale.append(str(page.relative_to(HERE.parent)))
            if not args.check:
                page.write_text(new)
    if args.check:
        if stale:
            print(f"{', '.join(stale)}: tables differ from benchmarks/results/; run `python benchmarks/tables.py`",
                  file=sys.stderr)
            return 1
        print(f"{count} tables match their results files")
        return 0
    print(f"{count} tables written from benchmarks/results/ ({', '.join(stale) or 'nothing'} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
