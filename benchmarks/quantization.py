"""INT8 beside FP32, and a chain of methods, on one front: which is best where it deploys?

The LeNet-5 teacher quantized alone (`ptq`), `kd` into LeNet-5-half, `c2s2` and
`filter_pruning_kd` pruning LeNet-5, and the chain `c2s2 > kd > ptq` (KD into the network
c2s2 pruned, then quantized) on digits, three seeds each, every study with the same four
deployment targets: ONNX Runtime at batch 1 and OpenVINO at batch 64, one thread, each in
float32 and int8 (each runtime's own quantizer: ONNX Runtime's, NNCF; training images calibrate). The
leaderboard then measures every study's networks again in one window per target and ranks
each target on its own figures (int8 targets on the int8 networks' accuracy and size).

Printed: per target, per study its seeds' selected trials (best on that target's validation
accuracy): test accuracy mean and std, latency with its interval, multiple of the teacher
in the same window, and file size; and the teacher's own figures there.

    uv run python benchmarks/quantization.py [--storage DIR] [--seeds 0,1,2] [--trials 6] [--smoke] [--json FILE]

``--smoke``: one seed, two trials per study.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Run, common_options, harness  # noqa: E402

PROMISES = {"test_acc_mean": "%", "latency": "ms", "latency_x_teacher": "x", "size": "kB", "study_time": "s"}
TARGETS = ("{ort_fp32: {runtime: onnxruntime, batch: 1}, ort_int8: {runtime: onnxruntime, batch: 1, precision: int8}, "
           "ov_fp32: {runtime: openvino, batch: 64}, ov_int8: {runtime: openvino, batch: 64, precision: int8}}")
# (study, spec, overrides); {storage} is the benchmark's storage folder. The chain's first step is the c2s2 study.
STUDIES = [
    ("bench-ptq", "search_spaces/ptq.yaml", {}),
    ("bench-kd", "search_spaces/kd.yaml", {}),
    ("bench-c2s2", "search_spaces/examples/chain/1-prune.yaml", {}),
    ("bench-l1", "search_spaces/filter_pruning_kd.yaml", {"budget.epochs": "6"}),
    ("bench-c2s2-kd", "search_spaces/examples/chain/2-distil.yaml", {"student.from_study": "{storage}/bench-c2s2"}),
    ("bench-c2s2-kd-ptq", "search_spaces/examples/chain/3-int8.yaml",
     {"student.from_study": "{storage}/bench-c2s2-kd"}),
]


def sweep(study: str, spec: str, overrides: dict[str, str], storage: Path, seeds: str, trials: int) -> float:
    settings = {"study": study, "deploy.targets": TARGETS, "seeds": f"[{seeds}]", **overrides}
    options = ["--storage", str(storage), "--progress", "quiet", "--num-samples", str(trials)]
    for key, value in settings.items():
        options += ["--set", f"{key}={value.replace('{storage}', str(storage))}"]
    return harness("sweep", spec, *options, what=f"{study}: the sweep")[0]


def figures(storage: Path) -> list[dict]:
    board = pd.read_parquet(storage / "leaderboard.parquet")
    rows = []
    for target, group in board[board["target"].ne("default")].groupby("target", sort=True):
        first = group.iloc[0]
        rows.append({"target": target, "method": "teacher (fp32)" if "int8" not in target else "teacher (int8)",
                     "study": "-", "test_acc_mean": first["teacher_test_acc"], "test_acc_std": None,
                     "latency_ms": first["teacher_latency_ms"], "latency_low_ms": None, "latency_high_ms": None,
                     "latency_x_teacher": 1.0, "size_bytes": first["teacher_size_bytes"], "seeds": None})
        for _, row in group.sort_values("test_acc_mean", ascending=False).iterrows():
            rows.append({k: (None if pd.isna(row[k]) else row[k]) if k in row else None for k in (
                "target", "method", "study", "test_acc_mean", "test_acc_std", "latency_ms", "latency_low_ms",
                "latency_high_ms", "latency_x_teacher", "size_bytes", "seeds")})
    return rows


def show(run: Run, rows: list[dict]) -> None:
    table = []
    for r in rows:
        std = f" ± {r['test_acc_std']:.2%}" if r["test_acc_std"] is not None else ""
        interval = (f" [{r['latency_low_ms']:.3g}-{r['latency_high_ms']:.3g}]"
                    if r["latency_low_ms"] is not None else "")
        table.append([r["target"], r["method"], f"{r['test_acc_mean']:.2%}{std}", f"{r['latency_ms']:.3g}{interval}",
                      f"{r['latency_x_teacher']:.2f}×", f"{r['size_bytes'] / 1000:.0f}"])
        where = {"target": r["target"], "method": r["method"]}
        run.figure("test_acc_mean", 100 * r["test_acc_mean"], **where)
        run.figure("latency", r["latency_ms"], **where)
        run.figure("latency_x_teacher", r["latency_x_teacher"], **where)
        run.figure("size", r["size_bytes"] / 1000, **where)
    header = ["target", "method", "test accuracy", "latency, ms", "× teacher", "size, kB"]
    run.table("front", header, table)
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="where the studies go (default: a temporary folder)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=6, help="trials per seed of each study")
    args = common_options(parser).parse_args()
    if args.smoke:  # one seed, two trials each: every code path, minutes
        args.seeds, args.trials = "0", 2
    bench = Run(__file__, PROMISES, args)
    storage = Path(args.storage or tempfile.mkdtemp(prefix="bench-quantization-")).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for study, spec, overrides in STUDIES:
        seconds[study] = bench.figure("study_time", sweep(study, spec, overrides, storage, args.seeds, args.trials),
                                      study=study)
        print(f"{study}: {seconds[study]:.0f} s", flush=True)
    bench.figure("study_time", harness("leaderboard", str(storage), what="the leaderboard")[0], study="leaderboard")
    show(bench, figures(storage))
    print(f"studies in {storage}")
    bench.finish()


if __name__ == "__main__":
    main()
