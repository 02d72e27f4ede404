"""Chains of methods: a student or teacher that is another study's trained network.

``student: {from_study: studies/c2s2-digits, trial: best}`` takes the network of a finished
study's trial (its architecture here, its weights and pruned shapes when the study runs,
harness.study.lineage). What can be checked from the parent's files is checked when the
spec is read, before any work: the parent exists and has finished, it ran on the same
splits of the same data set (its training images must not be this study's validation
images), and the trial exists and completed its budget.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import asdict
from typing import Any

import pandas as pd

from harness.errors import HarnessError, SpecError
from harness.spec.schema import DatasetSpec, ModelSpec
from harness.store.location import Location, open_study
from harness.store.tables import read_table, table_exists

NETWORK_FIELDS = ("model", "width", "kwargs", "features")
# What makes two studies' splits the same: the data set, its options and how validation is carved.
SPLIT_FIELDS = ("name", "val_fraction", "split_seed", "train", "test", "image_size")


def parent_record(text: str, where: str) -> tuple[Location, dict[str, Any]]:
    """The parent study's location and its ``study.json``; one line if there is none or it has not ended."""
    try:
        study = open_study(text)
    except HarnessError as error:  # a bucket that refuses, a URI that does not parse
        raise SpecError(f"{where}: {error}") from None
    path = study.local / "study.json"
    if not path.is_file():
        raise SpecError(f"{where}: no study at {study.uri} (no study.json); run the parent study first")
    record = json.loads(path.read_text())
    if not record.get("ended_at"):
        raise SpecError(f"{where}: study '{record.get('study')}' at {study.uri} has not finished (started "
                        f"{record.get('started_at') or 'at an unknown time'}, no end recorded); let it finish or "
                        f"resume it (harness sweep --resume) before chaining from it")
    return study, record


def fill_parent(raw: dict[str, Any], role: str) -> dict[str, Any]:
    """A spec's ``student:`` (or ``teacher:``) mapping with the parent's network filled in."""
    where = f"{role}.from_study"
    given = [key for key in (*NETWORK_FIELDS, "checkpoint", "recipe") if key in raw]
    if given:
        raise SpecError(f"{where}: the network is the parent trial's; leave out {', '.join(given)}")
    if not isinstance(raw["from_study"], str):
        raise SpecError(f"{where}: expected a study's folder or URI, got {raw['from_study']!r}")
    _, record = parent_record(raw["from_study"], where)
    network = record["spec"]["student"]
    return {**raw, **{key: network[key] for key in NETWORK_FIELDS if key in network}}


def check_parent(network: ModelSpec, dataset: DatasetSpec, role: str) -> pd.Series:
    """The parent trial's row, after checking it ran on this study's splits and completed."""
    where = f"{role}.from_study"
    study, record = parent_record(network.from_study, where)
    theirs, ours = record["spec"].get("dataset", {}), asdict(dataset)
    differ = [key for key in SPLIT_FIELDS if theirs.get(key) != ours.get(key)]
    if differ:
        shown = ", ".join(f"{key} {theirs.get(key)!r} against {ours.get(key)!r}" for key in differ)
        raise SpecError(f"{where}: study '{record['study']}' ran on other data ({shown}); a chain keeps one data "
                        f"set and its splits, so that no parent trained on this study's validation or test images")
    return chosen_trial(study, network.trial, f"{role}.trial")


def chosen_trial(study: Location, trial: str, where: str) -> pd.Series:
    """``best``: the completed trial best on validation over all seeds (ties: the first id); or the one named."""
    if not table_exists(study.local, "trials"):
        raise SpecError(f"{where}: {study.uri} has no trials.parquet")
    trials = read_table(study.local, "trials")
    done = trials[trials["status"].eq("completed") & trials["val_acc"].notna()]
    if trial == "best":
        if done.empty:
            raise SpecError(f"{where}: {study.uri} has no completed trial to chain from")
        return done.sort_values(["val_acc", "trial_id"], ascending=[False, True]).iloc[0]
    rows = trials[trials["trial_id"].eq(trial)]
    if rows.empty:
        close = difflib.get_close_matches(trial, list(trials["trial_id"]), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else " (trial ids are as trials.parquet writes them)"
        raise SpecError(f"{where}: {study.uri} has no trial '{trial}'{hint}")
    if rows.iloc[0]["status"] != "completed":
        raise SpecError(f"{where}: trial '{trial}' of {study.uri} is {rows.iloc[0]['status']}; only a completed "
                        f"trial has a final network")
    return rows.iloc[0]


def chain_of(record: dict[str, Any]) -> list[str]:
    """The methods that made a study's students, first to last: its parent's chain, then its own method."""
    lineage = record.get("lineage") or {}
    return [*(lineage.get("student") or {}).get("chain", []), record["spec"]["method"]]
