"""Pruning figures on real MNIST, LeNet-5, in one process.

1. C2S2 at a 50% MAC target, at several settings of its damage limit and regulariser: test
   accuracy against the unpruned network, and latency at batch 64 (and 1) of both, timed
   alternately in this process.
2. L1 filter pruning fine-tuned with KD from the unpruned network against the
   same pruning fine-tuned without KD, over three seeds.

    HARNESS_DATA=../shared/datasets uv run python benchmarks/pruning_mnist.py [--epochs 3] [--ratio 0.7]
        [--c2s2 0.06:0.7 0.03:0.5 ...]
        [--smoke] [--json FILE]

``--smoke``: one fine-tuning epoch on 2,000 training images, one seed of L1, a teacher of one
epoch in a temporary storage folder (the real MNIST is still needed).

The unpruned LeNet-5 is the harness's cached teacher for search_spaces/mnist/kd.yaml
(trained on first use). Search and early stopping play no part: the knobs are fixed,
so the test split is read once per run, for the report.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import methods  # noqa: E402
from benchmarks.common import Run, common_options, fail  # noqa: E402
from harness.data.batches import DeviceData  # noqa: E402
from harness.data.datasets import load_splits  # noqa: E402
from harness.measure.cost import count_macs, count_params, latency_ms, network_cost, serialized_size  # noqa: E402
from harness.networks.zoo import create_model  # noqa: E402
from harness.spec.load import load_spec  # noqa: E402
from harness.study.teachers import obtain_teacher  # noqa: E402
from harness.study.trial import seed_everything  # noqa: E402
from methods.base import MethodContext  # noqa: E402
from methods.training import evaluate, freeze  # noqa: E402

PROMISES = {"teacher_test_acc": "%", "c2s2_test_acc": "%", "c2s2_cost_ratio": "x", "c2s2_speedup": "x",
            "l1_test_acc": "%", "l1_test_acc_mean": "%", "kd_gain": "points"}

SETTINGS = ["0.06:0.7", "0.06:0.5", "0.06:1.0", "0.03:0.5"]
CPU = torch.device("cpu")
SHAPE = (1, 28, 28)


def prune(name: str, knobs: dict, teacher, data: DeviceData, epochs: int, seed: int):
    seed_everything(seed)
    cls = methods.METHODS.get(name)
    ctx = MethodContext(student=create_model("lenet5", 10), teacher=teacher, train=data.train, val=data.val,
                        epochs=epochs, device=CPU, generator=torch.Generator().manual_seed(seed),
                        cost=functools.partial(network_cost, input_shape=SHAPE, device=CPU))
    method = cls(ctx, cls.make_params(knobs))
    for epoch in range(epochs):
        method.train_step(epoch)
    return method.export()


def c2s2_row(run: Run, teacher, data: DeviceData, args, max_damage: float, reg: float, rounds: int, iters: int,
             base_acc: float, inputs) -> list[str]:
    """Prune by C2S2 at one setting, then its test accuracy, costs and speed-ups against the teacher."""
    setting = f"--max-damage {max_damage:g} --reg {reg:g}"
    print(f"\n== C2S2, target {args.target:.0%} of the MACs, {setting}, then KD fine-tuning ==")
    start = time.perf_counter()
    knobs = {"target_ratio": args.target, "reg": reg, "max_damage": max_damage, "alpha": 0.9, "lr": 0.01,
             "batch_size": 128, "gate_iters": iters, "step_iters": iters}
    student = prune("c2s2", knobs, teacher, data, args.epochs + 1, 0)
    acc = evaluate(student, data.test)["acc"]
    convs = [m.out_channels for m in student.modules() if isinstance(m, torch.nn.Conv2d)]
    costs = {k: f(student) / f(teacher) for k, f in (("params", count_params), ("size", serialized_size),
                                                       ("MACs", lambda m: count_macs(m, SHAPE, CPU)))}
    speedups: dict[int, list[float]] = {64: [], 1: []}
    for _ in range(rounds):  # alternate, so drift in machine load hits both alike
        for batch, x in zip((64, 1), inputs, strict=True):
            speedups[batch].append(latency_ms(teacher, x, repeats=30) / latency_ms(student, x, repeats=30))
    print(f"channels {convs}; " + ", ".join(f"{k} {v:.2f}x" for k, v in costs.items()))
    print(f"test acc {acc:.4f} vs unpruned {base_acc:.4f} ({100 * (acc - base_acc):+.2f} points)")
    for batch, ratios in speedups.items():
        print(f"latency speed-up at batch {batch}: median {statistics.median(ratios):.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} alternating rounds)")
    print(f"[{time.perf_counter() - start:.0f}s]")
    where = {"max_damage": max_damage, "reg": reg}
    run.figure("c2s2_test_acc", 100 * acc, target=args.target, **where)
    for cost, ratio in costs.items():
        run.figure("c2s2_cost_ratio", ratio, cost=cost, **where)
    for batch, values in speedups.items():
        run.figure("c2s2_speedup", statistics.median(values), batch=batch, **where)
    b64, b1 = speedups[64], speedups[1]
    return [f"`{setting}`", ", ".join(map(str, convs)), f"{costs['params']:.2f}x", f"{costs['MACs']:.2f}x",
            f"{100 * acc:.2f}% ({100 * (acc - base_acc):+.2f})",
            f"{statistics.median(b64):.2f}x ({min(b64):.2f}-{max(b64):.2f})", f"{statistics.median(b1):.2f}x"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (C2S2: plus one pruning report)")
    parser.add_argument("--ratio", type=float, default=0.7, help="L1: fraction of filters removed per layer")
    parser.add_argument("--c2s2", nargs="+", default=SETTINGS, metavar="MAX_DAMAGE:REG",
                        help="C2S2 settings, each its tolerated damage per fair-share step and its sparsity "
                             f"regulariser (default: {' '.join(SETTINGS)})")
    parser.add_argument("--target", type=float, default=0.5, help="C2S2 MAC target")
    parser.add_argument("--skip-l1", action="store_true", help="only the C2S2 part")
    parser.add_argument("--storage", default="studies")
    args = common_options(parser).parse_args()
    seeds, rounds, iters = range(3), 7, 100
    if args.smoke:
        args.epochs, args.storage, seeds, rounds, iters = 1, tempfile.mkdtemp(prefix="pruning-smoke-"), range(1), 2, 5
        args.c2s2 = args.c2s2[:1]
    try:
        settings = [tuple(float(v) for v in setting.split(":")) for setting in args.c2s2]
        if any(len(setting) != 2 for setting in settings):
            raise ValueError
    except ValueError:
        fail(f"--c2s2 takes MAX_DAMAGE:REG pairs such as 0.06:0.7, not {' '.join(args.c2s2)}")
    run = Run(__file__, PROMISES, args)
    torch.set_num_threads(1)

    spec = load_spec("search_spaces/mnist/kd.yaml",
                     ["dataset.download=false", *(["teacher.recipe.epochs=1"] if args.smoke else [])])
    splits = load_splits(spec.dataset.name, spec.dataset.root, spec.dataset.val_fraction, spec.dataset.split_seed,
                         False)
    record = obtain_teacher(spec, splits, Path(args.storage).resolve())
    if args.smoke:  # the pruning and fine-tuning code paths, on a slice of the training images
        splits = dataclasses.replace(splits, train=type(splits.train)(
            splits.train.x[:2000], splits.train.y[:2000], splits.train.source, splits.train.index[:2000]))
    teacher = create_model("lenet5", 10)
    teacher.load_state_dict(record.state)
    teacher = freeze(teacher)
    data = DeviceData(splits, CPU)
    base_acc = evaluate(teacher, data.test)["acc"]
    x64, x1 = torch.randn(64, *SHAPE), torch.randn(1, *SHAPE)
    print(f"machine: {torch.get_num_threads()} thread(s); unpruned LeNet-5: test {base_acc:.4f}, "
          f"{count_params(teacher)} params, {count_macs(teacher, SHAPE, CPU)} MACs")
    run.figure("teacher_test_acc", 100 * base_acc)

    rows = []
    for max_damage, reg in settings:
        rows.append(c2s2_row(run, teacher, data, args, max_damage, reg, rounds, iters, base_acc, (x64, x1)))
    run.table("c2s2", ["settings", "channels (unpruned 6, 16, 120)", "params", "MACs", "test acc",
                       "batch-64 speed-up (single rounds)", "batch-1 speed-up"], rows)

    if args.skip_l1:
        run.promises = {k: v for k, v in run.promises.items() if not k.startswith(("l1_", "kd_"))}
        run.finish()
        return
    print(f"\n== L1 filter pruning ({args.ratio:.0%} of the filters per layer), {args.epochs} fine-tuning epochs ==")
    results: dict[str, list[float]] = {"plain fine-tuning": [], "KD fine-tuning": []}
    for seed in seeds:
        for label, alpha in (("plain fine-tuning", 0.0), ("KD fine-tuning", 0.9)):
            student = prune("filter_pruning_kd", {"ratio": args.ratio, "alpha": alpha, "tau": 4.0, "lr": 0.01,
                                                  "batch_size": 128}, teacher, data, args.epochs, seed)
            results[label].append(evaluate(student, data.test)["acc"])
            print(f"seed {seed} {label:17s} test {results[label][-1]:.4f} "
                  f"(params {count_params(student) / count_params(teacher):.2f}x)", flush=True)
    for label, accs in results.items():
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{label:17s} mean {statistics.mean(accs):.4f} ± {spread:.4f} over {len(accs)} seeds")
        for seed, acc in zip(seeds, accs, strict=True):
            run.figure("l1_test_acc", 100 * acc, fine_tuning=label, seed=seed)
        run.figure("l1_test_acc_mean", 100 * statistics.mean(accs), fine_tuning=label, seeds=len(accs))
    gain = statistics.mean(results["KD fine-tuning"]) - statistics.mean(results["plain fine-tuning"])
    print(f"KD gain: {100 * gain:+.2f} points")
    run.figure("kd_gain", 100 * gain, ratio=args.ratio)
    run.table("l1", ["fine-tuning", f"test acc, seeds {', '.join(map(str, seeds))}", "mean ± std"],
              [[label, ", ".join(f"{100 * a:.2f}" for a in accs),
                f"{100 * statistics.mean(accs):.2f}% ± {100 * (statistics.stdev(accs) if len(accs) > 1 else 0):.2f}"]
               for label, accs in results.items()])
    run.finish()


if __name__ == "__main__":
    main()
