"""``harness report STUDY_DIR ...``: one offline HTML file for one or more studies."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reports import figures
from reports.html import Page, export_images, slug
from reports.importance import distributions, param_importances
from reports.load import Study, load_study
from reports.summary import (
    LATENCY,
    SIZE,
    one_latency_per_network,
    seed_spread,
    status_counts,
    unplaced,
    window_lines,
    with_fronts,
)
from reports.targets import at_target, label, targets


def build_report(folders: list[str | Path], output: str | Path, images: bool = True) -> tuple[Path, list[str]]:
    """Write the report; return its path and notes worth printing (skipped parts, unplaced trials)."""
    studies = [load_study(f) for f in folders]
    every = pd.concat([s.trials for s in studies], ignore_index=True)
    trials = with_fronts(one_latency_per_network(every), by=["dataset", "device"])
    page = Page("Compression study report: " + ", ".join(s.name for s in studies))
    notes = protocol_section(page, studies, trials)
    references = reference_lines(studies, trials)
    for dataset, group in trials.groupby("dataset", dropna=False):
        cost_section(page, dataset, group, [r for r in references if r["dataset"] == dataset])
    measured = [s.latencies for s in studies if not s.latencies.empty]
    latencies = pd.concat(measured, ignore_index=True) if measured else pd.DataFrame()
    for target, batch in targets(latencies):  # one section per deployment target, on its own figures
        view = with_fronts(one_latency_per_network(at_target(every, latencies, target, batch)),
                           by=["dataset", "device"])
        for dataset, group in view.groupby("dataset", dropna=False):
            cost_section(page, dataset, group, [r for r in references if r["dataset"] == dataset],
                         label(latencies, target, batch))
    for study in studies:
        search_section(page, study)
    output = Path(output)
    page.write(output)
    if images:
        notes.append(export_images(page, output.with_suffix("").parent / f"{output.stem}_figures"))
    return output, notes


def protocol_section(page: Page, studies: list[Study], trials: pd.DataFrame) -> list[str]:
    """How the figures were made, and every trial counted by status; returns the notes to print."""
    page.heading("Protocol")
    for study in studies:
        page.paragraph(protocol(study))
    notes = [study.state_line() for study in studies if study.running]
    for note in notes:
        page.paragraph(note, "warn")
    for line, warning in window_lines(trials):
        page.paragraph(line, "warn" if warning else None)
        notes += [line] if warning else []
    page.heading("Trials")
    page.table(status_counts(trials))
    missing = unplaced(trials)
    if missing:
        text = "Not on the cost charts (no final measurement): " + ", ".join(f"{n} {k}" for k, n in missing.items())
        page.paragraph(text, "note")
        notes.append(text)
    errors = trials[trials["status"].eq("error")]
    if len(errors):
        page.table(errors[[c for c in ("study", "trial_id", "error") if c in errors]])
    return notes


def cost_section(page: Page, dataset: str, trials: pd.DataFrame, references: list[dict[str, Any]],
                 target: str | None = None) -> None:
    """Accuracy against latency and size with fronts, the 3-D view, and the spread over seeds;
    for a deployment ``target`` (its label), accuracy against that target's latency only."""
    if target is not None:
        page.heading(f"{dataset}: accuracy against latency on target {target}")
        tag = slug(f"{dataset}_{target.split(':')[0]}")
        page.figure(figures.pareto_chart(trials, LATENCY, "pareto_latency", references), f"accuracy_vs_latency_{tag}")
        return
    page.heading(f"{dataset}: accuracy against measured cost")
    page.paragraph("Every completed trial. Lines: each method's own Pareto front; diamonds: trials on the front "
                   "of all methods together. Fronts are decided on validation accuracy and the cost (the test "
                   "split is only read, never selected on). Hover for a trial's details; double-click to see "
                   "every point. Latency here is the default target's (torch eager); each deployment target "
                   "has a section of its own below.", "note")
    tag = slug(dataset)
    page.figure(figures.pareto_chart(trials, LATENCY, "pareto_latency", references), f"accuracy_vs_latency_{tag}")
    page.figure(figures.pareto_chart(trials, SIZE, "pareto_size", references, log_x=True), f"accuracy_vs_size_{tag}")
    page.figure(figures.cube_chart(trials), f"accuracy_latency_size_{tag}")
    spread = seed_spread(trials, ["study", "method"])
    if spread.empty:
        page.paragraph("No completed trial yet: no spread over seeds.", "warn")
        return
    page.figure(figures.spread_chart(spread, references), f"spread_over_seeds_{tag}")
    page.table(spread.rename(columns={"per_seed": "test acc per seed"}),
               {"test_acc_mean": "{:.2%}", "test_acc_std": "{:.2%}", LATENCY: "{:.3g}", SIZE: "{:,.0f}"})


def search_section(page: Page, study: Study) -> None:
    """Learning curves, the searched knobs and their importance, for one study."""
    page.heading(f"{study.name}: search")
    tag = slug(study.name)
    page.figure(figures.learning_curves(study.trials, study.epochs, study.name), f"curves_{tag}")
    space = study.spec.get("search", {}).get("space", {})
    parcoords = figures.parallel_coordinates(study.trials, distributions(space), study.name)
    if parcoords is not None:
        page.figure(parcoords, f"knobs_{tag}")
    first = study.objectives[0]
    importances, note = param_importances(study.trials, space, first["metric"], first["mode"])
    if importances:
        page.figure(figures.importance_chart(importances, study.name), f"importance_{tag}")
    page.paragraph(f"Hyperparameter importance: {note}.", "note")


def protocol(study: Study) -> str:
    """The protocol in words: data and splits, budget, search, device, versions."""
    info, spec = study.info, study.spec
    data = info.get("dataset", {})
    search = spec.get("search", {})
    asha = spec.get("asha", {})
    devices = (", ".join(sorted(study.trials["device"].dropna().astype(str).unique()))
               if "device" in study.trials else "")
    versions = info.get("versions") or {}
    teacher = study.teacher
    teacher_text = (f"teacher {teacher.get('model')} ({teacher.get('source', 'given')}, test {teacher['test_acc']:.2%})"
                    if teacher.get("test_acc") is not None else "no teacher")
    objectives = ", ".join(f"{o['metric']} ({o['mode']})" for o in study.objectives)
    limits = study.trials["limits"].dropna() if "limits" in study.trials else pd.Series(dtype=object)
    if len(limits):  # search.constraints: selection among the trials within them
        untrained = int(study.trials["status"].eq("infeasible").sum())
        objectives += (f" within {limits.iloc[0]} (the selected trial is the best within them; {untrained} "
                       f"draw(s) over them never trained)")
    return (f"{study.name}: method {spec.get('method')} on {data.get('name')} "
            f"(train {data.get('train', 'withheld')}, validation {data.get('val')}, test {data.get('test')}; "
            f"validation carved from the training data, test read once per completed trial), "
            f"{teacher_text}, student {spec.get('student', {}).get('model')}; "
            f"{search.get('num_samples')} trials per seed x seeds {spec.get('seeds')}, budget "
            f"{spec.get('budget', {}).get('epochs')} reports, {search.get('searcher')} search on {objectives}, ASHA "
            f"grace {asha.get('grace_period')} reduction {asha.get('reduction_factor')}; "
            f"measured on {devices or 'n/a'}, {latency_protocol(study.trials)}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")


def latency_protocol(trials: pd.DataFrame) -> str:
    """Where the latencies come from: the end of each trial, or a window after the search."""
    again = trials["latency_rounds"].notna() if "latency_rounds" in trials else pd.Series(False, index=trials.index)
    if not again.any():
        return "latency taken at the end of each trial, beside the trials running with it"
    done = trials[again]
    rounds = int(done["latency_rounds"].max())
    networks = done["network"].nunique() if "network" in done else len(done)
    noisy = int(done["latency_noisy"].fillna(False).astype(bool).sum()) if "latency_noisy" in done else 0
    return (f"latency of {len(done)} completed trial(s), {networks} distinct network(s), measured again after "
            f"the search in one window, {rounds} interleaved round(s) (median interval width "
            f"{done['latency_spread'].median():.0%})" + (f", {noisy} flagged noisy" if noisy else ""))


def reference_lines(studies: list[Study], trials: pd.DataFrame) -> list[dict[str, Any]]:
    """The teachers' test accuracy and each `scratch` study's mean over seeds, as chart lines."""
    lines: dict[str, dict[str, Any]] = {}
    for study in studies:
        teacher = study.teacher
        if teacher.get("test_acc") is not None:
            label = f"teacher {teacher.get('model')} {teacher['test_acc']:.2%}"
            lines[label] = {"acc": teacher["test_acc"], "label": label, "colour": "black", "dash": "dash",
                            "dataset": teacher.get("dataset", study.spec.get("dataset", {}).get("name"))}
    scratch = trials[trials["method"].eq("scratch")]
    for row in seed_spread(scratch, ["dataset", "study", "student"]).to_dict("records"):
        label = f"scratch {row['student']} {row['test_acc_mean']:.2%}"
        lines[label] = {"acc": row["test_acc_mean"], "label": label, "colour": "grey", "dash": "dot",
                        "dataset": row["dataset"]}
    return list(lines.values())
