"""The model card beside each exported file: what it is, how it was checked, and its latency
measured here on each of the study's deployment targets beside the study's own figure."""
from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.measure.cost import device_name
from harness.measure.latency import session_window
from harness.measure.quantize import network_file
from harness.measure.runtimes import Session, missing
from harness.networks.deployed import Deployed
from harness.spec.schema import DEFAULT_TARGET, MeasureSpec, StudySpec, TargetSpec
from harness.study.results import versions


def target_latencies(spec: StudySpec, fmt: str, path: Path, model: Deployed, input_shape: tuple[int, ...],
                     latencies: pd.DataFrame, trial_id: str,
                     only: dict[str, TargetSpec] | None = None) -> dict[str, dict[str, Any]]:
    """The file's latency on each of the study's deployment targets, measured here as the study
    measured them (runtime, threads, batch sizes; ``measure.rounds`` interleaved rounds), beside
    the study's figure and whether the two intervals overlap. An ONNX file is timed itself in
    ONNX Runtime and OpenVINO; otherwise the network is set up in the target's runtime.
    The default target is torch eager at the measurement batch with the trial's threads; an ONNX
    file is also timed in ONNX Runtime so, where no target is, at that batch and those threads.
    Int8 targets time the int8 file (``only``: those targets alone), never the float32 one."""
    m = spec.measure
    threads = max(1, math.floor(spec.resources.cpu))
    fp32 = {name: t for name, t in spec.deploy.targets.items() if t.precision == "fp32"}
    targets = only or {DEFAULT_TARGET: TargetSpec("torch", [m.batch_size], threads), **fp32}
    if not only and fmt == "onnx" and not any(t.runtime == "onnxruntime" for t in fp32.values()):
        targets["onnxruntime"] = TargetSpec("onnxruntime", [m.batch_size], threads)  # the file in its runtime
    rounds = m.rounds or MeasureSpec().rounds
    out = {}
    for name, target in targets.items():
        if missing(target.runtime) is not None:
            out[name] = {"runtime": target.runtime, "not_measured": missing(target.runtime)}
            continue
        graph = network_file(path) if (fmt == "onnx" and target.runtime in ("onnxruntime", "openvino")
                                       or fmt == "openvino") else model
        session = Session(graph, input_shape, target.runtime, target.threads)
        figures = session_window({"file": session}, target.batch, rounds, m.warmup, m.repeats, m.max_spread,
                                 m.attempts)["file"]
        out[name] = {"runtime": target.runtime, "threads": target.threads,
                     "timed": "this file" if isinstance(graph, bytes) else f"the network in {target.runtime}",
                     "node": socket.gethostname(), "target_node": target.placed and vars(target.node) or None,
                     "batch": {b: _interval(f) for b, f in figures.items()},
                     "study": {b: _study_figure(latencies, name, b, trial_id) for b in target.batch}}
        out[name]["agrees"] = {b: _overlap(out[name]["batch"][b], out[name]["study"][b]) for b in target.batch}
    return out


def _interval(figures: dict[str, Any]) -> dict[str, float]:
    return {k: figures[f"latency_{k}_ms" if k != "median" else "latency_ms"] for k in ("median", "low", "high")}


def _study_figure(latencies: pd.DataFrame, target: str, batch: int, trial_id: str) -> dict[str, float] | None:
    """The study's own figure of this trial on the target (the default's is in the row, elsewhere)."""
    if target == DEFAULT_TARGET or latencies.empty:
        return None
    rows = latencies[latencies["trial_id"].eq(trial_id) & latencies["target"].eq(target)
                     & latencies["batch"].eq(batch)]
    if rows.empty or pd.isna(rows.iloc[0]["latency_ms"]):
        return None
    return _interval(rows.iloc[0].to_dict())


def _overlap(here: dict[str, float], study: dict[str, float] | None) -> bool | None:
    if study is None:
        return None
    return bool(here["low"] <= study["high"] and study["low"] <= here["high"])


def latency_text(targets: dict[str, dict[str, Any]]) -> str:
    """``default torch b64 1.62 ms; ort_b1 onnxruntime b1 0.019 ms (study 0.018 ms, intervals overlap)``."""
    parts = []
    for name, t in targets.items():
        if "not_measured" in t:
            parts.append(f"{name} not measured ({t['not_measured']})")
            continue
        for batch, figure in t["batch"].items():
            text = f"{name}{'' if name == t['runtime'] else ' ' + t['runtime']} b{batch} {figure['median']:.3g} ms"
            study = t["study"].get(batch)
            if study is not None:
                text += (f" (study {study['median']:.3g} ms, intervals "
                         f"{'overlap' if t['agrees'][batch] else 'apart'})")
            parts.append(text)
    return "; ".join(parts)


def model_card(spec: StudySpec, row: pd.Series, data: Any, fmt: str, path: Path, accuracy: float, gap: float,
               params: int, fingerprint: str, targets: dict[str, dict[str, Any]]) -> dict:
    if fmt == "onnx":
        import onnx

        stamped = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    c, h, w = data.input_shape
    return {
        "file": path.name, "format": fmt, "precision": "fp32", "study": spec.study, "trial": row["trial_id"],
        "seed": int(row["seed"]),
        "method": row["method"] if isinstance(row.get("method"), str) else spec.method,  # a chain: c2s2 > kd
        "parent": {"study": row["parent_study"], "trial": row["parent_trial"]}
        if isinstance(row.get("parent_study"), str) else None,
        "knobs": json.loads(row["config"]) if isinstance(row.get("config"), str) else None,
        "student": spec.student.model, "teacher": spec.teacher.model if spec.teacher else None,
        "dataset": data.name, "classes": data.num_classes,
        "input": {"shape": ["N", c, h, w], "dtype": "float32", "range": [0.0, 1.0],
                  "scaling": "uint8 pixels / 255, channels first" + (", RGB" if c == 3 else ", greyscale"),
                  "normalisation": f"inside the graph: (x - {list(data.mean)}) / {list(data.std)}"},
        "val_acc": row["val_acc"], "test_acc": row["test_acc"], "test_acc_from_file": accuracy,
        "max_logit_difference": gap, "params": params, "macs": row.get("macs"), "size_bytes": path.stat().st_size,
        "onnx_initializer_floats": int(stamped["initializer_floats"]) if fmt == "onnx" else None,
        "targets": targets, "latency_device": device_name(torch.device("cpu")),
        "trial_latency_ms": row.get("latency_ms"), "trial_device": row.get("device"),
        "spec_fingerprint": fingerprint, "versions": json.loads(versions()),
    }


def card_markdown(card: dict) -> str:
    latency = latency_text(card["targets"])
    shape = " x ".join(map(str, card["input"]["shape"]))
    return "\n".join([
        f"# {card['study']} / {card['trial']}", "",
        f"`{card['file']}` ({card['format']}, {card.get('precision', 'fp32')}): {card['method']} student "
        f"`{card['student']}` "
        f"(teacher `{card['teacher']}`) on {card['dataset']}, {card['classes']} classes.", "",
        "| | |", "|---|---|",
        f"| input | float32 {shape}, values in [0, 1]: {card['input']['scaling']}; "
        f"{card['input']['normalisation']} |",
        f"| knobs | `{json.dumps(card['knobs'])}` |",
        f"| validation accuracy | {card['val_acc']:.4f} |",
        f"| test accuracy | {card['test_acc']:.4f} (from this file: {card['test_acc_from_file']:.4f}) |",
        f"| parameters | {card['params']:,}" + (
            f" (the file's initializers hold {card['onnx_initializer_floats']:,} floats: the exporter folds "
            f"BatchNorm into the convolutions; the count is in the file's metadata, `params`)"
            if card["onnx_initializer_floats"] is not None else "") + " |", f"| MACs | {card['macs']:,.0f} |",
        f"| file size | {card['size_bytes']:,} bytes |",
        f"| latency per deployment target | {latency}, measured on {card['latency_device']} "
        f"(default target in the study: {card['trial_latency_ms']:.3g} ms on {card['trial_device']}) |",
        f"| spec fingerprint | {card['spec_fingerprint']} |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in card['versions'].items())} |", "",
    ])
