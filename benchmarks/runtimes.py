"""One network in every runtime: do the runtimes agree on which network is faster?

The networks of the digits studies (LeNet-5 teacher, the LeNet-5-half student of `kd`,
LeNet-5 pruned by L1 as `filter_pruning_kd` prunes it) and of the image-folder example
(torchvision's ResNet-18 at 32x32, pruned likewise), each pruned network twice: with the
channel counts the pruning leaves (`round_to: 1`) and rounded up to multiples of 8. Every
network runs in every installed runtime (harness.measure.runtimes: torch eager,
torch.compile, ONNX Runtime, OpenVINO) at batch 1 and 64 on one thread, timed in
interleaved rounds (each round visits every network, runtime and batch once) in this one
process; each figure is the median of the rounds with its order-statistic interval.

Printed: per set of networks, each network's latency per runtime and batch with its ratio to
the teacher in that runtime; the ranks per runtime; where two runtimes order a pair of
networks differently (beyond both intervals) or put a network's ratio to the teacher more
than 1.5x apart; and what rounding the channels to 8 changes per runtime.

    uv run python benchmarks/runtimes.py [--rounds 5] [--repeats 10] [--threads 1] [--smoke] [--json FILE]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Run, common_options  # noqa: E402
from harness.measure.latency import median_interval  # noqa: E402
from harness.measure.runtimes import Session, installed  # noqa: E402
from harness.networks.zoo import create_model  # noqa: E402
from methods.surgery import ChannelSurgeon, keep_count, l1_norms  # noqa: E402

PROMISES = {"latency": "ms", "latency_low": "ms", "latency_high": "ms", "x_teacher": "x"}
LABELS = {"torch": "torch", "torch_compile": "torch.compile", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def l1_pruned(model: torch.nn.Module, shape: tuple[int, ...], ratio: float, round_to: int) -> torch.nn.Module:
    """``ratio`` of each unit's filters removed by L1 norm, as filter_pruning_kd does (layer scope)."""
    surgeon = ChannelSurgeon(model, torch.zeros(1, *shape))
    for unit in surgeon.units():
        norms = sum(l1_norms(c) for c in surgeon.coupled(unit))
        drop = norms.numel() - keep_count(norms.numel(), int(ratio * norms.numel()), round_to)
        surgeon.remove(unit, norms.argsort()[:drop].tolist())
    return model.eval()


def network_sets(smoke: bool) -> dict[str, tuple[tuple[int, ...], dict[str, torch.nn.Module]]]:
    torch.manual_seed(0)
    digits = (1, 28, 28)
    sets = {"digits": (digits, {
        "LeNet-5 (teacher)": create_model("lenet5", 10, 1.0, digits).eval(),
        "LeNet-5-half (kd)": create_model("lenet5_half", 10, 1.0, digits).eval(),
        "LeNet-5 L1 55%": l1_pruned(create_model("lenet5", 10, 1.0, digits), digits, 0.55, 1),
        "LeNet-5 L1 55%, round_to 4": l1_pruned(create_model("lenet5", 10, 1.0, digits), digits, 0.55, 4),
    })}
    if not smoke:
        image = (3, 32, 32)

        def resnet() -> torch.nn.Module:
            return torchvision.models.resnet18(weights=None, num_classes=10).eval()

        sets["image folder, 32x32"] = (image, {
            "ResNet-18 (teacher)": resnet(),
            "ResNet-18 L1 45%": l1_pruned(resnet(), image, 0.45, 1),
            "ResNet-18 L1 45%, round_to 8": l1_pruned(resnet(), image, 0.45, 8),
            "ResNet-18 L1 70%": l1_pruned(resnet(), image, 0.70, 1),
        })
    return sets


def measure(sets, runtimes: list[str], batches: list[int], rounds: int, repeats: int, threads: int) -> dict:
    """(set, network, runtime, batch) -> the median over interleaved rounds and its interval."""
    sessions, prepared = {}, {}
    for (name, (shape, nets)), runtime in itertools.product(sets.items(), runtimes):
        for net, model in nets.items():
            start = time.perf_counter()
            sessions[name, net, runtime] = Session(model, shape, runtime, threads)
            for batch in batches:  # compiles, allocates: outside the timed rounds
                sessions[name, net, runtime](sessions[name, net, runtime].batch(batch))
            prepared[name, net, runtime] = time.perf_counter() - start
    runs: dict[tuple, list[float]] = {}
    for _ in range(rounds):
        for (name, net, runtime), session in sessions.items():
            for batch in batches:
                runs.setdefault((name, net, runtime, batch), []).append(
                    session.latency_ms(batch, warmup=2, repeats=repeats))
    figures = {}
    for key, values in runs.items():
        low, high = median_interval(values)
        figures[key] = {"median_ms": statistics.median(values), "low_ms": low, "high_ms": high,
                        "prepare_s": prepared[key[:3]]}
    return figures


def report(sets, figures: dict, runtimes: list[str], batches: list[int]) -> list[str]:
    lines = []
    for name, (shape, nets) in sets.items():
        teacher = next(iter(nets))
        lines.append(f"\n{name} (input {shape}), latency in ms [interval] and ratio to the teacher in that runtime")
        for batch in batches:
            lines.append(f"  batch {batch}:")
            header = f"    {'network':<30}" + "".join(f"{r:>32}" for r in runtimes)
            lines.append(header)
            for net in nets:
                cells = []
                for runtime in runtimes:
                    f, t = figures[name, net, runtime, batch], figures[name, teacher, runtime, batch]
                    cells.append(f"{f['median_ms']:.3f} [{f['low_ms']:.3f}-{f['high_ms']:.3f}] "
                                 f"{f['median_ms'] / t['median_ms']:.2f}x")
                lines.append(f"    {net:<30}" + "".join(f"{c:>32}" for c in cells))
            ranks = {r: sorted(nets, key=lambda n, r=r: figures[name, n, r, batch]["median_ms"]) for r in runtimes}
            for runtime in runtimes:
                lines.append(f"    rank in {runtime}: " + " < ".join(ranks[runtime]))
            lines += disagreements(name, nets, figures, runtimes, batch)
        lines += rounding(name, nets, figures, runtimes, batches)
    return lines


def disagreements(name, nets, figures, runtimes, batch) -> list[str]:
    found = []
    teacher = next(iter(nets))
    for a, b in itertools.combinations(nets, 2):
        order = {}
        for runtime in runtimes:
            fa, fb = figures[name, a, runtime, batch], figures[name, b, runtime, batch]
            if fa["high_ms"] < fb["low_ms"]:
                order[runtime] = "<"
            elif fb["high_ms"] < fa["low_ms"]:
                order[runtime] = ">"
        if len(set(order.values())) > 1:
            found.append(f"    ORDER DISAGREES at batch {batch}: {a} vs {b}: "
                         + ", ".join(f"{r} {a.split(' (')[0]} {o} {b.split(' (')[0]}" for r, o in order.items()))
    for net in list(nets)[1:]:
        ratios = {r: figures[name, net, r, batch]["median_ms"] / figures[name, teacher, r, batch]["median_ms"]
                  for r in runtimes}
        if max(ratios.values()) > 1.5 * min(ratios.values()):
            found.append(f"    RATIO DISAGREES at batch {batch}: {net} is "
                         + ", ".join(f"{v:.2f}x in {r}" for r, v in ratios.items()) + " the teacher")
    return found


def rounding(name, nets, figures, runtimes, batches) -> list[str]:
    lines = []
    for net in nets:
        rounded = next((n for n in nets if n.startswith(net + ", round_to")), None)
        if rounded is None:
            continue
        for batch in batches:
            changes = ", ".join(
                f"{r} {figures[name, rounded, r, batch]['median_ms'] / figures[name, net, r, batch]['median_ms']:.2f}x"
                for r in runtimes)
            lines.append(f"  {rounded.split(', ')[-1]} against the unrounded {net}, batch {batch}: {changes}")
    return lines


def record(run: Run, sets, figures: dict, runtimes: list[str], batches: list[int]) -> None:
    """Every figure, and the README's table: per network, each runtime and batch with its ratio to the teacher."""
    rows = []
    for name, (_, nets) in sets.items():
        teacher = next(iter(nets))
        for net in nets:
            cells = []
            for batch in batches:
                for runtime in runtimes:
                    f, t = figures[name, net, runtime, batch], figures[name, teacher, runtime, batch]
                    where = {"set": name, "network": net, "runtime": runtime, "batch": batch}
                    run.figure("latency", f["median_ms"], **where)
                    run.figure("latency_low", f["low_ms"], **where)
                    run.figure("latency_high", f["high_ms"], **where)
                    ratio = run.figure("x_teacher", f["median_ms"] / t["median_ms"], **where)
                    cells.append(f"{f['median_ms']:.3g} ({ratio:.2g}x)")
            rows.append([net, *cells])
    run.table("runtimes", ["network", *(f"{LABELS.get(r, r)} b{b}" for b in batches for r in runtimes)], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure in a round (default: 10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = common_options(parser).parse_args()
    if args.smoke:  # the digits networks only, 1 round: seconds
        args.rounds, args.repeats, args.batches = 1, 2, [1, 2]
    run = Run(__file__, PROMISES, args)
    runtimes = installed()
    sets = network_sets(args.smoke)
    print(f"runtimes: {', '.join(runtimes)}; {args.threads} thread(s); batches {args.batches}; "
          f"{args.rounds} interleaved rounds of {args.repeats} timed runs", flush=True)
    figures = measure(sets, runtimes, args.batches, args.rounds, args.repeats, args.threads)
    for line in report(sets, figures, runtimes, args.batches):
        print(line)
    record(run, sets, figures, runtimes, args.batches)
    run.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
