"""Chains at run time: the parent trial's weights for a chained student or teacher, and the
lineage that study.json and every row record (harness.spec.parents checked the parent and
named its trial when the spec was read)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.data.datasets import DatasetSplits
from harness.errors import HarnessError
from harness.networks.build import trained_network
from harness.spec.parents import chain_of, chosen_trial, parent_record
from harness.spec.schema import ModelSpec, StudySpec
from harness.study.students import Weights, trial_student

CHAIN = " > "  # how a chain's methods are written: c2s2 > kd


@dataclass
class Parent:
    """The trial a chained network comes from."""

    uri: str
    study: str
    trial: str
    chain: list[str]  # the methods that made it, first to last
    state: Weights
    row: dict[str, Any]

    def describe(self) -> str:
        return (f"trial {self.trial} of '{self.study}' ({CHAIN.join(self.chain)}; val_acc {self.row['val_acc']:.4f}, "
                f"test_acc {self.row['test_acc']:.4f}, {self.row['params']:,.0f} parameters)")


def load_parent(network: ModelSpec, role: str, data: DatasetSplits) -> Parent:
    """The parent trial's network, checked against this study's data: the same splits (by their
    fingerprint, not only their settings) and a network that fits its classes."""
    where = f"{role}.from_study"
    study, record = parent_record(network.from_study, where)
    theirs = (record.get("dataset") or {}).get("fingerprint")
    if theirs != data.fingerprint:
        raise HarnessError(f"{where}: study '{record['study']}' ran on other splits ({theirs}) than these "
                           f"{data.name} splits ({data.fingerprint}); a chain keeps one data set and its splits")
    row = chosen_trial(study, network.trial, f"{role}.trial")
    state = trial_student(study, row)
    try:
        trained_network(network, data.num_classes, data.input_shape, role, state)
    except RuntimeError as error:  # load_state_dict: other classes, or another architecture's keys
        first = (str(error).strip().splitlines() or [""])[0]
        raise HarnessError(f"{where}: trial {row['trial_id']} of '{record['study']}' does not fit this study's "
                           f"{data.num_classes} classes and {data.input_shape} images ({first})") from None
    return Parent(study.uri, record["study"], str(row["trial_id"]), chain_of(record), state, row.to_dict())


def lineage(spec: StudySpec, student: Parent | None) -> dict[str, Any]:
    """study.json's ``lineage``: where each chained network came from, and the study's own chain."""
    record: dict[str, Any] = {"chain": [*(student.chain if student else []), spec.method]}
    if student is not None:
        record["student"] = {"study": student.study, "uri": student.uri, "trial": student.trial,
                             "chain": student.chain}
    if spec.teacher is not None and spec.teacher.from_study:
        record["teacher"] = {"uri": spec.teacher.from_study, "trial": spec.teacher.trial}
    return record


def lineage_columns(record: dict[str, Any] | None) -> dict[str, Any]:
    """The columns every row of a chained study carries: its method named as the chain
    (``c2s2 > kd``: the leaderboard ranks a chain as a method of its own) and its parent."""
    if not record or "student" not in record:
        return {}
    parent = record["student"]
    return {"method": CHAIN.join(record["chain"]), "chain": CHAIN.join(record["chain"]),
            "parent_study": parent["uri"], "parent_trial": parent["trial"]}
