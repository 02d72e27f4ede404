#!/usr/bin/env bash
# The GPU check, one script under 8 minutes on one GPU (run it whenever a GPU machine is at hand):
#   1. training throughput, the harness's device-resident batches against the DataLoader
#      pipeline (benchmarks/throughput.py, bf16 cases included);
#   2. a study of four trials sharing the GPU (resources.gpu 0.25) in bf16, with the GPU's
#      utilisation sampled every second and each trial process's memory;
#   3. GPU runtimes: a LeNet-5 and a ResNet-18 at batch 1 and 64 in torch eager on CUDA and in
#      ONNX Runtime's CUDA and TensorRT execution providers where the onnxruntime-gpu package
#      provides them (deployment targets run on CPUs today; docs/cluster.md).
# Figures go to stdout and to $OUT (or ./gpu_check) as logs; benchmarks/README.md keeps them.
#   bash benchmarks/gpu_check.sh            # with `uv run` when uv is there, else python3
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
if command -v uv >/dev/null; then py=(uv run python); else py=(python3); fi
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"${py[@]}" -c "import torch, ray, optuna; print('torch', torch.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__)"

echo "== 1. throughput against the DataLoader baseline"
timeout 240 "${py[@]}" benchmarks/throughput.py --device cuda --repeats 3 2>&1 | tee "$out/throughput.log"

echo "== 2. four trials sharing the GPU, bf16"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
  > "$out/utilisation.csv" &
gpu_sampler=$!
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -l 1 > "$out/apps.csv" &
app_sampler=$!
trap 'kill $gpu_sampler $app_sampler 2>/dev/null || true' EXIT
storage=$(mktemp -d)
start=$(date +%s)
timeout 300 "${py[@]}" -m harness sweep search_spaces/kd.yaml --storage "$storage" --progress events \
  --set resources.gpu=0.25 --set resources.cpu=1 --set resources.precision=bf16 \
  --set search.num_samples=4 --set search.max_concurrent=4 --set measure.rounds=1 2>&1 | tee "$out/study.log"
echo "study wall time: $(( $(date +%s) - start )) s"
kill $gpu_sampler $app_sampler 2>/dev/null || true
"${py[@]}" - "$out" "$storage" <<'PY'
import sys
from pathlib import Path
import pandas as pd
from harness.store.tables import read_table
out, storage = Path(sys.argv[1]), Path(sys.argv[2])
util = pd.read_csv(out / "utilisation.csv", names=["time", "util", "mem"], skipinitialspace=True)
busy = util[util["util"] > 0]
print(f"GPU utilisation while busy: median {busy['util'].median():.0f}%, mean {busy['util'].mean():.0f}% "
      f"over {len(busy)} s; memory used at most {util['mem'].max():.0f} MiB")
apps = pd.read_csv(out / "apps.csv", names=["pid", "mem"], skipinitialspace=True)
per = apps.groupby("pid")["mem"].max()
print(f"per-process GPU memory (trial workers and teacher), MiB: {sorted(per.astype(int).tolist())}")
trials = read_table(storage / "kd-digits", "trials")
epochs = read_table(storage / "kd-digits", "epochs")
print(trials[["trial_id", "status", "val_acc", "test_acc", "device"]].to_string(index=False))
rate = 1294 / epochs["epoch_s"]
print(f"images per second per trial (digits training split / epoch_s): median {rate.median():.0f}")
PY

echo "== 3. GPU runtimes: torch CUDA eager against ONNX Runtime's CUDA and TensorRT providers"
timeout 240 "${py[@]}" - <<'PY' 2>&1 | tee "$out/gpu_runtimes.log"
import statistics, time
import numpy as np, torch
from harness.measure.runtimes import onnx_bytes
from harness.networks.zoo import create_model
try:
    import onnxruntime as ort
    providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]
except ImportError:
    ort, providers = None, []
print("ONNX Runtime GPU providers here:", providers or "none (pip install onnxruntime-gpu)")
def timed(call, n=50):
    for _ in range(10):
        call()
    runs = []
    for _ in range(n):
        start = time.perf_counter(); call(); torch.cuda.synchronize(); runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000
for name, shape in (("lenet5", (1, 28, 28)), ("resnet18", (3, 32, 32))):
    model = create_model(name, 10, 1.0, shape).eval()
    graph = onnx_bytes(model, shape)
    cuda = model.cuda()
    for batch in (1, 64):
        x = torch.rand(batch, *shape)
        with torch.inference_mode():
            line = [f"{name} b{batch}: torch cuda {timed(lambda: cuda(x.cuda())):.3f} ms"]
        for provider in providers:
            session = ort.InferenceSession(graph, providers=[provider])
            line.append(f"{provider} {timed(lambda: session.run(None, {'images': x.numpy()})):.3f} ms")
        print(", ".join(line))
PY
