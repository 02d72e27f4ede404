"""``python -m harness``: sweep a study spec, report on studies, rank them, measure them again, or list
what is registered."""
from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="run a hyperparameter study from a YAML spec")
    sweep.add_argument("spec", help="the study spec, e.g. search_spaces/kd.yaml")
    sweep.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    sweep.add_argument("--storage", help="results folder (default: the spec's storage, 'studies')")
    sweep.add_argument("--num-samples", type=int, help="trials per seed (overrides search.num_samples)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the interrupted run of this study in its storage folder")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec field, e.g. --set budget.epochs=5 (repeatable)")
    report = commands.add_parser("report", help="one offline HTML report for one or more study folders")
    report.add_argument("studies", nargs="+", metavar="STUDY_DIR", help="study folders, e.g. studies/kd-digits")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default: report.html)")
    report.add_argument("--no-images", action="store_true", help="skip the static PNG/SVG export")
    board = commands.add_parser("leaderboard", help="rank every study under a storage folder")
    board.add_argument("storage", nargs="?", default="studies", help="the storage folder (default: studies)")
    board.add_argument("--budgets", default="0.5,1", help="latency and size budgets as fractions of the "
                       "teacher's, comma-separated (default: 0.5,1)")
    again = commands.add_parser("remeasure", help="measure finished studies' completed trials again, together, "
                                "one at a time, so that their latencies compare")
    again.add_argument("studies", nargs="+", metavar="STUDY_DIR", help="study folders, e.g. studies/kd-digits")
    again.add_argument("--rounds", type=int, default=3, help="passes over every trial, interleaved (default: 3)")
    again.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    commands.add_parser("list", help="list the registered methods, models and datasets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from reports.load import ReportError

    try:
        if args.command == "list":
            return list_registered()
        if args.command == "report":
            return report(args)
        if args.command == "leaderboard":
            return leaderboard(args)
        if args.command == "remeasure":
            return remeasure(args)
        return sweep(args)
    except (HarnessError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the results written so far stay in the study folder", file=sys.stderr)
        return 130


def sweep(args: argparse.Namespace) -> int:
    from harness.spec import load_spec

    overrides = list(args.overrides)
    if args.num_samples is not None:
        overrides.append(f"search.num_samples={args.num_samples}")
    spec = load_spec(args.spec, overrides)  # validated before anything starts
    from harness.cluster import configure_ray

    configure_ray(args.address)  # before Ray is imported
    from harness.sweep import run_sweep

    run_sweep(spec, storage=args.storage, address=args.address, resume=args.resume,
              recorded_data=recorded_fingerprint(args.spec))
    return 0


def recorded_fingerprint(spec_path: str) -> str | None:
    """The data fingerprint in a results folder's study.json; None for a spec file."""
    import json

    from harness.spec import spec_file

    path = spec_file(spec_path)
    if path.name != "study.json":
        return None
    dataset = json.loads(path.read_text()).get("dataset")
    return dataset.get("fingerprint") if isinstance(dataset, dict) else None


def remeasure(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.rounds < 1:
        raise HarnessError(f"--rounds: must be at least 1, got {args.rounds}")
    from harness.cluster import configure_ray

    configure_ray(args.address)  # before Ray is imported
    from harness.cluster import connect
    from harness.remeasure import load_finished_studies, remeasure_studies

    studies = load_finished_studies([Path(s) for s in args.studies])  # every error before Ray starts
    connect(args.address)
    for line in remeasure_studies(studies, args.rounds):
        print(line)
    return 0


def report(args: argparse.Namespace) -> int:
    from reports.study_report import build_report

    path, notes = build_report(args.studies, args.output, images=not args.no_images)
    for note in notes:
        print(note)
    print(f"report: {path}")
    return 0


def leaderboard(args: argparse.Namespace) -> int:
    from reports.leaderboard import build_leaderboard

    try:
        budgets = tuple(float(b) for b in args.budgets.split(",") if b.strip())
    except ValueError:
        raise HarnessError(f"--budgets: expected fractions like 0.5,1, got '{args.budgets}'") from None
    board, paths = build_leaderboard(args.storage, budgets)
    print(f"leaderboard: {board.table['study'].nunique()} studies ({board.read} read, {board.cached} unchanged), "
          f"{len(board.trials)} trials")
    for path in paths:
        print(f"  {path}")
    return 0


def list_registered() -> int:
    import methods
    from harness.data import DATASETS
    from harness.zoo import MODELS

    for cls_name in methods.METHODS.names():
        cls = methods.METHODS.get(cls_name)
        flag = " (data-free)" if cls.data_free else ""
        print(f"method   {cls_name}{flag}: knobs (defaults) {', '.join(describe_knobs(cls))}")
    print(f"models   {', '.join(MODELS.names())}")
    print(f"datasets {', '.join(DATASETS.names())}")
    return 0


def describe_knobs(method: type) -> list[str]:
    """``name=default`` for each knob as a spec writes it, with the named values a knob takes."""
    from dataclasses import fields

    def shown(value: object) -> str:
        return "null" if value is None else "''" if value == "" else str(value)

    choices = method.param_choices()
    return [f"{f.name}={shown(f.default)}" + (f" ({'|'.join(choices[f.name])})" if f.name in choices else "")
            for f in fields(method.Params)]
