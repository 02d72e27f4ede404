"""``harness`` (or ``python -m harness``): check or sweep a study spec, report on studies,
rank them, measure them again, or list what is registered. docs/cli.md describes each command."""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from harness.errors import HarnessError

# The distribution's three top-level packages sit side by side (a wheel installs them so, a
# clone holds them so); `methods` and `reports` are names other projects use too.
OWN_PACKAGES = ("methods", "reports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def study_command(name: str, help: str, runs: bool = True) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        command.add_argument("spec", help="the study spec: a YAML file (search_spaces/kd.yaml), a shipped spec by "
                                          "name (kd; `harness list --specs`), or a study's results folder")
        command.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override a spec field, e.g. --set budget.epochs=5 (repeatable)")
        command.add_argument("--code", action="append", default=[], metavar="FOLDER",
                             help="a package folder of yours (models, loaders) to import and ship to every "
                                  "node, as the spec's `code:` (repeatable)")
        if runs:
            command.add_argument("--num-samples", type=int, help="trials per seed (overrides search.num_samples)")
            command.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
            command.add_argument("--storage", help="results folder (default: the spec's storage, 'studies')")
        return command

    sweep = study_command("sweep", "run a hyperparameter study from a YAML spec")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the interrupted run of this study in its storage folder")
    sweep.add_argument("--progress", choices=("auto", "events", "bar", "quiet"), default="auto",
                       help="bar: a status per seed redrawn in place; events: a line per trial start and end; "
                            "quiet: errors and retries only, as every mode prints them (default: the bar on "
                            "a terminal, events otherwise)")
    study_command("check", "validate a spec completely and print what a sweep would do, without starting Ray")
    splits = study_command("splits", "write the indices of the images in the study's training, validation "
                           "and test splits (keep a teacher of your own off the last two)", runs=False)
    splits.add_argument("-o", "--output", help="the JSON file to write (default: <study>-splits.json)")
    report = commands.add_parser("report", help="one offline HTML report for one or more study folders")
    report.add_argument("studies", nargs="+", metavar="STUDY_DIR", help="study folders, e.g. studies/kd-digits")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default: report.html)")
    report.add_argument("--no-images", action="store_true", help="skip the static PNG/SVG export")
    board = commands.add_parser("leaderboard", help="rank every study under a storage folder")
    board.add_argument("storage", nargs="?", default="studies", help="the storage folder (default: studies)")
    board.add_argument("--budgets", default="0.5,1", help="latency and size budgets as fractions of the "
                       "teacher's, comma-separated (default: 0.5,1)")
    board.add_argument("--no-remeasure", action="store_true",
                       help="rank on the latencies as they are, even where a data set's studies were measured "
                            "in different windows (the leaderboard then says so)")
    board.add_argument("--rounds", type=int, help="interleaved rounds when measuring again (default: the "
                       "largest measure.rounds of each group's studies)")
    board.add_argument("--address", help="Ray cluster to measure on (default: $RAY_ADDRESS, else a local Ray)")
    again = commands.add_parser("remeasure", help="measure finished studies' completed trials again, together, "
                                "one at a time, so that their latencies compare")
    again.add_argument("studies", nargs="+", metavar="STUDY_DIR", help="study folders, e.g. studies/kd-digits")
    again.add_argument("--rounds", type=int, help="passes over every distinct network, interleaved (default: the "
                       "largest measure.rounds of the studies)")
    again.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    export = commands.add_parser("export", help="write a study's students as files a deployment loads, "
                                 "checked against their rows, each with a model card")
    export.add_argument("study", metavar="STUDY_DIR", help="a study folder, e.g. studies/kd-digits")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--trial", metavar="ID",
                       help="one trial, by its trial_id (e.g. s0-3f2c91aa, as in trials.parquet)")
    which.add_argument("--best", action="store_true", help="the best on validation over all seeds (the default)")
    which.add_argument("--front", action="store_true", help="every trial on the study's validation Pareto front")
    export.add_argument("--format", choices=("pt2", "onnx", "state_dict"), default="pt2",
                        help="pt2: torch.export (torch.export.load, no code needed); onnx: ONNX Runtime; "
                             "state_dict: weights only (default: pt2)")
    export.add_argument("-o", "--output", help="the folder to write to (default: STUDY_DIR/export)")
    listing = commands.add_parser("list", help="the registered methods (with their knobs), models and datasets")
    listing.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                         help="markdown: the knob tables of docs/methods.md (default: text)")
    listing.add_argument("--specs", action="store_true",
                         help="the study specs that ship with the harness instead (`harness sweep NAME` runs one)")
    init = commands.add_parser("init", help="write a copy of a shipped spec to edit")
    init.add_argument("name", help="a shipped spec's name, e.g. kd (`harness list --specs`)")
    init.add_argument("-o", "--output", help="the file to write (default: NAME.yaml here, NAME's last part)")
    return parser


def foreign_packages() -> list[str]:
    """The top-level names of ours that import from somewhere else: a folder of the same name
    in the working directory (``python -m`` puts it first on the path), on PYTHONPATH, or
    another installed distribution's. Found without importing them."""
    ours = Path(__file__).resolve().parents[2]
    found = []
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None or Path(origin).resolve().parent != ours / name:
            where = origin or (", ".join(spec.submodule_search_locations) if spec is not None else "nowhere")
            found.append(f"'{name}' imports from {where}, not from {ours / name}")
    return found


def main(argv: list[str] | None = None) -> int:
    if shadowed := foreign_packages():
        print(f"error: {'; '.join(shadowed)}: another package of that name comes first on the import path "
              f"(a folder of that name where you run `python -m harness`, PYTHONPATH, or another "
              f"distribution); run from another folder, or uninstall the other", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    from methods.study import StudyError
    from reports.load import ReportError

    commands = {"sweep": sweep, "check": check, "splits": splits, "report": report, "leaderboard": leaderboard,
                "remeasure": remeasure, "export": export, "list": list_registered, "init": init_spec}
    try:
        return commands[args.command](args)
    except (HarnessError, StudyError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the results written so far stay in the study folder", file=sys.stderr)
        return 130


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("compression-harness")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def load(args: argparse.Namespace):
    """The spec a study command names, with its overrides, validated."""
    from harness.spec.load import load_spec
    from harness.spec.shipped import resolve_spec

    overrides = list(args.overrides)
    if getattr(args, "num_samples", None) is not None:
        overrides.append(f"search.num_samples={args.num_samples}")
    path, shipped = resolve_spec(args.spec)
    if shipped is not None:
        print(f"spec: the shipped '{shipped}' ({path}); `harness init {shipped}` writes a copy to edit")
    return load_spec(path, overrides, code=args.code)


def check(args: argparse.Namespace) -> int:
    from harness.study.plan import plan

    spec = load(args)
    for line in plan(spec, args.storage, args.address):
        print(line)
    print(f"ok: `{sweep_command(args)}` would run this study")
    return 0


def sweep_command(args: argparse.Namespace) -> str:
    """The ``harness sweep`` command that runs what ``check`` checked: the same spec, overrides,
    code folders, trials, storage and cluster."""
    import shlex

    words = ["harness", "sweep", args.spec]
    for flag, values in (("--set", args.overrides), ("--code", args.code)):
        for value in values:
            words += [flag, value]
    for flag, value in (("--num-samples", args.num_samples), ("--storage", args.storage),
                        ("--address", args.address)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def splits(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.data.datasets import load_dataset, split_indices
    from harness.store.lock import writing

    spec = load(args)
    d = spec.dataset
    data = load_dataset(d)
    path = Path(args.output or f"{spec.study}-splits.json")
    with writing(path):
        path.write_text(split_indices(data))
    print(f"{path}: {data.name} ({data.fingerprint}): train {len(data.train)}, validation {len(data.val)}, "
          f"test {len(data.test)} images, by their index in the data set's own splits")
    return 0


def sweep(args: argparse.Namespace) -> int:
    spec = load(args)  # validated before anything starts
    from harness.study.cluster import configure_ray

    configure_ray(args.address)  # before Ray is imported
    from harness.study.sweep import run_sweep

    run_sweep(spec, storage=args.storage, address=args.address, resume=args.resume,
              recorded_data=recorded_fingerprint(args.spec), progress=args.progress)
    return 0


def recorded_fingerprint(spec_path: str) -> str | None:
    """The data fingerprint in a results folder's study.json; None for a spec file."""
    import json

    from harness.spec.load import spec_file

    path = spec_file(spec_path)
    if path.name != "study.json":
        return None
    dataset = json.loads(path.read_text()).get("dataset")
    return dataset.get("fingerprint") if isinstance(dataset, dict) else None


def remeasure(args: argparse.Namespace) -> int:
    if args.rounds is not None and args.rounds < 1:
        raise HarnessError(f"--rounds: must be at least 1, got {args.rounds}")
    from harness.study.cluster import configure_ray

    configure_ray(args.address)  # before Ray is imported
    from contextlib import ExitStack

    from harness.store.lock import StudyLock
    from harness.study.cluster import connect
    from harness.study.remeasure import load_finished_studies, remeasure_studies

    studies = load_finished_studies(args.studies)  # every error before Ray starts
    with ExitStack() as locks:
        for _, writer in studies:
            locks.enter_context(StudyLock(writer.location or writer.folder, "remeasure"))
        code = sorted({folder for students, _ in studies for folder in students.spec.code})
        connect(args.address, code)  # the studies' own networks may come from the user's code
        for line in remeasure_studies(studies, args.rounds):
            print(line)
    return 0


def export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.deploy.export import export_study
    from harness.store.location import open_study

    study = open_study(args.study)
    out = Path(args.output) if args.output else None
    for line in export_study(study, args.trial, args.front, args.format, out):
        # Written into the study's folder: on object storage, into its mirror, uploaded below.
        print(line.replace(str(study.local), study.uri) if out is None else line)
    if out is None:
        study.push("export")
    return 0


def report(args: argparse.Namespace) -> int:
    from harness.store.location import open_study
    from reports.study_report import build_report

    folders = [open_study(study).local for study in args.studies]  # object storage: read from the mirror
    path, notes = build_report(folders, args.output, images=not args.no_images)
    for note in notes:
        print(note)
    print(f"report: {path}")
    return 0


def leaderboard(args: argparse.Namespace) -> int:
    from harness.store.location import NOT_MIRRORED, open_location
    from reports.leaderboard import build_leaderboard

    try:
        budgets = tuple(float(b) for b in args.budgets.split(",") if b.strip())
    except ValueError:
        raise HarnessError(f"--budgets: expected fractions like 0.5,1, got '{args.budgets}'") from None
    if args.rounds is not None and args.rounds < 1:
        raise HarnessError(f"--rounds: must be at least 1, got {args.rounds}")
    root = open_location(args.storage)
    if root.remote:  # the studies' own files, into the mirror; then the leaderboard's files back
        root.pull(skip=(*NOT_MIRRORED, "teachers", "export"))
    if not args.no_remeasure:  # latencies that compare: each data set's studies in one window
        from harness.study.cluster import configure_ray

        configure_ray(args.address)  # before Ray is imported
        from harness.study.windows import measure_in_one_window

        measure_in_one_window(root, args.rounds, args.address)
    board, paths = build_leaderboard(root.local, budgets)
    names = [path.relative_to(root.local).as_posix() for path in paths]
    for name in names:
        root.push(name)
    print(f"leaderboard: {board.table['study'].nunique()} studies ({board.read} read, {board.cached} unchanged), "
          f"{len(board.trials)} trials")
    for name in names:
        print(f"  {root.uri_of(name)}")
    return 0


def list_registered(args: argparse.Namespace) -> int:
    from harness.cli import listing

    if args.specs:
        print(listing.specs_text(), end="")
        return 0
    print({"text": listing.text, "json": listing.json_text, "markdown": listing.markdown}[args.format](),
          end="")
    return 0


def init_spec(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.spec.shipped import resolve_spec, shipped_spec
    from harness.store.lock import writing

    source = shipped_spec(args.name)
    if source is None:
        resolve_spec(args.name)  # no such file either: the error line with the closest names
        raise HarnessError(f"'{args.name}' is a file, not a shipped spec: copy it yourself")
    target = Path(args.output or f"{Path(args.name).name.removesuffix('.yaml')}.yaml")
    if target.exists():
        raise HarnessError(f"{target}: already exists; give another file with -o")
    with writing(target):
        target.write_text(source.read_text())
    print(f"{target}: a copy of the shipped '{args.name.removesuffix('.yaml')}'; edit it, then "
          f"`harness check {target}` and `harness sweep {target}`")
    return 0
