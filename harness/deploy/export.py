"""``harness export``: a study's students out of their checkpoints, as files a deployment
loads without the harness, each checked against its trial's row and described by a card.

The exported network takes float32 images of shape (N, C, H, W) with pixel values in
[0, 1] (uint8 / 255) at the study's image size; the data set's normalisation is inside
the graph, so a user's script needs only that scaling. A pruned student is exported at
its pruned shapes.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from harness.deploy.card import card_markdown, latency_text, model_card, target_latencies
from harness.errors import HarnessError
from harness.measure.cost import count_params
from harness.measure.quantize import ir_files, is_ir, network_file
from harness.measure.runtimes import Session
from harness.networks.build import trained_network
from harness.networks.deployed import Deployed
from harness.spec.schema import StudySpec
from harness.store.location import Location, open_location
from harness.store.lock import writing
from harness.store.tables import read_table, table_exists
from harness.study.students import trial_student

FORMATS = {"pt2": ".pt2", "onnx": ".onnx", "state_dict": ".pt"}
MATCH_TOLERANCE = 1e-4  # largest absolute logit difference between the file and the trial's student


def chosen_rows(trials: pd.DataFrame, spec: StudySpec, trial: str | None, front: bool) -> tuple[pd.DataFrame, str]:
    """The rows to export and how they were chosen: one trial, the best on validation over
    all seeds, or every trial on the study's validation Pareto front."""
    done = trials[trials["status"].eq("completed") & trials["val_acc"].notna()]
    if trial is not None:
        rows = trials[trials["trial_id"].eq(trial)]
        if rows.empty:
            raise HarnessError(f"--trial: the study has no trial '{trial}'")
        if rows.iloc[0]["status"] != "completed":
            raise HarnessError(f"--trial: '{trial}' is {rows.iloc[0]['status']}; only completed trials have a "
                               f"final student")
        return rows, f"trial {trial}"
    if done.empty:
        raise HarnessError("the study has no completed trial to export")
    if not front:
        best = done.sort_values(["val_acc", "trial_id"], ascending=[False, True]).head(1)
        return best, f"the best on validation over all {done['seed'].nunique()} seed(s)"
    objectives = [(o.metric, o.mode) for o in spec.search.objectives if o.metric in done]
    values = np.column_stack([done[m].to_numpy(float) * (-1 if mode == "max" else 1) for m, mode in objectives])
    dominated = [any((other <= own).all() and (other < own).any() for other in values) for own in values]
    return done[~np.array(dominated)], f"the validation Pareto front over {', '.join(m for m, _ in objectives)}"


def student_network(spec: StudySpec, study: Location, row: pd.Series, num_classes: int,
                    input_shape: tuple[int, int, int]) -> nn.Module:
    """The trial's final student, at its own (possibly pruned) shapes."""
    return trained_network(spec.student, num_classes, input_shape, "student", trial_student(study, row))


def write_file(model: Deployed, fmt: str, path: Path, example: torch.Tensor) -> int:
    """Write the file; the parameter count of what it holds (for ONNX, of the torch.export program
    of the same network: ONNX's optimiser folds BatchNorm into the convolutions' initializers)."""
    if fmt == "state_dict":
        torch.save(model.state_dict(), path)
        return count_params(model)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    if fmt == "pt2":
        torch.export.save(program, path)
    else:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its steps
            # From the module, not the program: ONNX Runtime ran that graph 1.6x faster (a pruned ResNet-18).
            torch.onnx.export(model, (example,), str(path), dynamic_shapes=({0: batch},), external_data=False,
                              input_names=["images"], output_names=["logits"])
    params = sum(program.state_dict[name].numel() for name in program.graph_signature.parameters)
    if fmt == "onnx":
        stamp_onnx(path, params)
    return params


def stamp_onnx(path: Path, params: int) -> None:
    """Write the network's parameter count and input into the ONNX file's metadata, where
    ONNX Runtime shows it (``session.get_modelmeta().custom_metadata_map``): ONNX has no
    notion of parameters, and its initializers hold BatchNorm folded into the convolutions."""
    import onnx

    model = onnx.load(str(path))
    floats = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {
        "params": str(params), "initializer_floats": str(floats),
        "input": "float32 (N, C, H, W), uint8 pixels / 255, normalisation inside the graph"})
    onnx.save(model, str(path))


def reload(fmt: str, path: Path, like: Deployed) -> Callable[[np.ndarray], np.ndarray]:
    """The written file as a function of a float32 batch."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"images": x})[0]
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
    else:
        module = like
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return lambda x: module(torch.from_numpy(x)).detach().numpy()


def _batches(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int = 256) -> np.ndarray:
    return np.concatenate([run(x[i:i + size]) for i in range(0, len(x), size)])


def export_study(study: Path | Location, trial: str | None, front: bool, fmt: str, out: Path | None) -> list[str]:
    """Export the chosen trials of the study in ``study`` (a folder, or a pulled study on object
    storage, whose checkpoints are read from the bucket); the lines to print."""
    from harness.data.datasets import load_dataset
    from harness.spec.load import load_spec

    study = study if isinstance(study, Location) else open_location(study)
    folder = study.local

    if not table_exists(folder, "trials"):
        raise HarnessError(f"{folder}: no study results here (trials.parquet)")
    spec = load_spec(str(folder))
    trials = read_table(folder, "trials")
    rows, how = chosen_rows(trials, spec, trial, front)
    latencies = read_table(folder, "latencies") if table_exists(folder, "latencies") else pd.DataFrame()
    data = load_dataset(spec.dataset)
    test_x = (data.test.x.astype(np.float32) / 255)
    test_y = data.test.y
    out = out or folder / "export"
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    record = json.loads((folder / "study.json").read_text())
    fingerprint = hashlib.sha256(json.dumps(record["spec"], sort_keys=True).encode()).hexdigest()[:16]
    lines = [f"exporting {len(rows)} trial(s) of '{spec.study}': {how}"]
    for _, row in rows.iterrows():
        student = student_network(spec, study, row, data.num_classes, data.input_shape)
        model = Deployed(student, data.mean, data.std).eval()
        path = out / f"{spec.study}-{row['trial_id']}{FORMATS[fmt]}"
        example = torch.from_numpy(test_x[:2])
        with writing(out):
            params = write_file(model, fmt, path, example)
        run = reload(fmt, path, copy.deepcopy(model))  # a state_dict file loads into a copy, not the original
        with torch.no_grad():
            expected = model(torch.from_numpy(test_x[:256])).numpy()
        gap = float(np.abs(run(test_x[:256]) - expected).max())
        accuracy = float((_batches(run, test_x).argmax(1) == test_y).mean())
        one_image = 1 / len(test_y)
        if gap > MATCH_TOLERANCE or abs(accuracy - row["test_acc"]) > one_image + 1e-9 or params != row["params"]:
            raise HarnessError(f"{path}: the exported file does not reproduce trial {row['trial_id']}: logits "
                               f"differ by up to {gap:.2e}, test accuracy {accuracy:.4f} against "
                               f"{row['test_acc']:.4f}, {params:,} parameters against {row['params']:,.0f}")
        measured = target_latencies(spec, fmt, path, model, data.input_shape, latencies, row["trial_id"])
        card = model_card(spec, row, data, fmt, path, accuracy, gap, params, fingerprint, measured)
        with writing(out):
            path.with_name(f"{path.name}.json").write_text(json.dumps(card, indent=2, default=str))
            path.with_name(f"{path.name}.md").write_text(card_markdown(card))
        lines.append(f"{path}: test_acc {accuracy:.4f} recomputed from the file (row: {row['test_acc']:.4f}), "
                     f"logits within {gap:.1e} of the trial's student, {params:,} parameters (row: "
                     f"{row['params']:,.0f}); latency here: {latency_text(card['targets'])}")
        if fmt == "onnx":
            for name in spec.deploy.int8:
                lines.append(write_int8(spec, name, path, model, row, data, latencies, params, fingerprint, out))
    return lines


def write_int8(spec: StudySpec, name: str, path: Path, model: Deployed, row: pd.Series, data: Any,
               latencies: pd.DataFrame, params: int, fingerprint: str, out: Path) -> str:
    """The float32 file quantized as the study's int8 target ``name`` quantized it (the same
    calibration images), checked against that target's row: test accuracy recomputed from the
    file within one test image. Its card; the line to print."""
    from harness.study.quantized import int8_graph, int8_images, trial_quantization

    target = spec.deploy.targets[name]
    settings = trial_quantization(spec, [row.to_dict()]).get(row["trial_id"])  # a ptq trial's own
    int8, _ = int8_graph(path.read_bytes(), int8_images(spec, data).calibration, spec, target.runtime, settings)
    # ONNX Runtime's int8 network is an ONNX file; NNCF's for OpenVINO is IR, an .xml and its .bin.
    int8_path = path.with_name(f"{path.stem}-{name}{'.xml' if is_ir(int8) else '.onnx'}")
    with writing(out):
        if is_ir(int8):
            for part, content in zip((int8_path, int8_path.with_suffix(".bin")), ir_files(int8), strict=True):
                part.write_bytes(content)
        else:
            int8_path.write_bytes(int8)
            stamp_onnx(int8_path, params)
    size = sum(p.stat().st_size for p in (int8_path, int8_path.with_suffix(".bin")) if p.exists())
    session = Session(network_file(int8_path), data.input_shape, target.runtime, target.threads)
    test_x, test_y = data.test.x.astype(np.float32) / 255, data.test.y
    accuracy = session.accuracy(test_x, test_y)
    with torch.no_grad():
        gap = float(np.abs(session(test_x[:256]) - model(torch.from_numpy(test_x[:256])).numpy()).max())
    mine = latencies[latencies["trial_id"].eq(row["trial_id"]) & latencies["target"].eq(name)] \
        if not latencies.empty else latencies
    if mine.empty or pd.isna(mine.iloc[0].get("test_acc")):
        raise HarnessError(f"{int8_path}: the study has no int8 figures of trial {row['trial_id']} on target "
                           f"'{name}' to check the file against (measure it: harness remeasure)")
    expected = float(mine.iloc[0]["test_acc"])
    if abs(accuracy - expected) > 1 / len(test_y) + 1e-9:
        raise HarnessError(f"{int8_path}: the int8 file does not reproduce target {name}'s figure of trial "
                           f"{row['trial_id']}: test accuracy {accuracy:.4f} against {expected:.4f}")
    kind = "openvino" if is_ir(int8) else "onnx"  # OpenVINO IR, or an ONNX file
    measured = target_latencies(spec, kind, int8_path, model, data.input_shape, latencies, row["trial_id"],
                                only={name: target})
    int8_row = row.copy()
    int8_row["test_acc"], int8_row["val_acc"] = expected, float(mine.iloc[0]["val_acc"])
    card = model_card(spec, int8_row, data, kind, int8_path, accuracy, gap, params, fingerprint, measured)
    card.update(precision="int8", size_bytes=size)
    with writing(out):
        int8_path.with_name(f"{int8_path.name}.json").write_text(json.dumps(card, indent=2, default=str))
        int8_path.with_name(f"{int8_path.name}.md").write_text(card_markdown(card))
    return (f"{int8_path}: int8 ({name}), test_acc {accuracy:.4f} recomputed from the file (target's row: "
            f"{expected:.4f}), logits within {gap:.1e} of the float32 student, {size:,} bytes; "
            f"latency here: {latency_text(measured)}")
