"""Measurement quality: how repeatable the harness's latency figures are, and what they cost.

Each model is measured ``--runs`` times with the harness's own measurement
(``harness.measure.cost.measure_latency``: warm-up, then the median of timed runs at
batch 1 and at the spec's batch size), as a trial does at its end. The script
prints the median over runs, the spread between runs ((max - min) / median and
the coefficient of variation), and the seconds one measurement takes.

The same is repeated while another process trains a model on the other cores,
as a parallel trial would: the spread between the idle and the busy figures is
what separates latencies measured in different trials of one study.

    uv run python benchmarks/latency_quality.py [--runs 10] [--threads 1] [--smoke] [--json FILE]

``--smoke``: two runs of the LeNets only.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Run, common_options  # noqa: E402
from harness.measure.cost import device_name, measure_latency  # noqa: E402
from harness.networks.zoo import create_model  # noqa: E402

MODELS = (("lenet5_half", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("resnet20", (3, 32, 32)))
PROMISES = {"latency": "ms", "spread": "%", "cv": "%", "cost": "s"}


def busy_trainer(stop, threads: int) -> None:
    """A neighbouring trial: ResNet-20 training steps until told to stop."""
    torch.set_num_threads(threads)
    model = create_model("resnet20", 10, 1.0, (3, 32, 32))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    while not stop.is_set():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def repeat(model, shape, device, batch: int, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"latency_b1_ms": [], "latency_ms": [], "seconds": []}
    for _ in range(runs):
        start = time.perf_counter()
        latency = measure_latency(model, shape, device, batch)
        figures["seconds"].append(time.perf_counter() - start)
        for key, value in latency.items():
            figures[key].append(value)
    return figures


def describe(values: list[float]) -> tuple[float, float, float]:
    """Median, spread ((max - min) / median) and coefficient of variation, the last two in percent."""
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median
    cv = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0
    return median, 100 * spread, 100 * cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measurements per model and condition")
    parser.add_argument("--threads", type=int, default=1, help="threads of the measuring process (a trial's CPUs)")
    parser.add_argument("--batch", type=int, default=64, help="the larger batch size (measure.batch_size)")
    parser.add_argument("--device", default="cpu")
    args = common_options(parser).parse_args()
    models = MODELS[:2] if args.smoke else MODELS
    if args.smoke:
        args.runs = 2
    run = Run(__file__, PROMISES, args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cores = os.cpu_count() or 1
    neighbour_threads = max(1, cores - args.threads)
    print(f"device: {device_name(device)}; {args.runs} measurements per row; one measurement = "
          f"warm-up 5 + median of 20 timed runs, at batch 1 and {args.batch}")
    rows = []
    for name, shape in models:
        torch.manual_seed(0)
        model = create_model(name, 10, 1.0, shape).to(device)
        for condition in ("idle", f"beside a training process ({neighbour_threads} thread(s))"):
            stop = None
            if condition != "idle":
                stop = mp.get_context("spawn").Event()
                worker = mp.get_context("spawn").Process(target=busy_trainer, args=(stop, neighbour_threads))
                worker.start()
                time.sleep(3)  # let it reach its steady state
            figures = repeat(model, shape, device, args.batch, args.runs)
            if stop is not None:
                stop.set()
                worker.join()
            print(f"{name:<12} {condition}")
            where = "idle" if condition == "idle" else "busy"
            for batch, key in ((1, "latency_b1_ms"), (args.batch, "latency_ms")):
                median, spread, cv = describe(figures[key])
                print(f"  batch {batch:<3} {median:8.3f} ms  spread {spread:5.1f}%  cv {cv:4.1f}%")
                for figure, value in (("latency", median), ("spread", spread), ("cv", cv)):
                    run.figure(figure, value, model=name, condition=where, batch=batch)
                rows.append([name, where, batch, f"{median:.3f}", f"{spread:.1f}%", f"{cv:.1f}%"])
            cost = run.figure("cost", statistics.mean(figures["seconds"]), model=name, condition=where)
            print(f"  cost      {cost:8.3f} s per measurement (both batch sizes)")
    run.table("repeatability", ["model", "condition", "batch", "median ms", "spread", "cv"], rows)
    run.finish()


if __name__ == "__main__":
    main()
