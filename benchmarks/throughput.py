"""Training throughput: the harness's device-resident step against the conventional pipeline.

For each case the same method class (``scratch``, ``kd`` or ``kdgan``), the same model, batch
size, optimiser and augmentation run twice in this process:

- harness: the images normalised on the device once (``harness.data.batches.DeviceSplit``),
  each epoch a permutation and slices, crop/flip done on the whole batch;
- baseline: a torchvision data set read from files in torchvision's own format, with
  per-sample transforms (``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize``) and a ``DataLoader`` (batches copied to the device every step), with
  0 and with N worker processes; the ratio is against the faster of the two.

MNIST-shaped data is the real MNIST when ``../shared/datasets`` (or $HARNESS_DATA)
holds it, else random images written as MNIST files; CIFAR-shaped data is random
images written as CIFAR-10 files. Images per second: the median of interleaved
timed epochs, after one warm-up epoch per pipeline.

    uv run python benchmarks/throughput.py                 # every case
    uv run python benchmarks/throughput.py --options       # + channels-last and torch.compile rows

``--smoke``: every case and option at 2% of its images, one timed epoch; ``--json FILE``.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import methods  # noqa: E402
from benchmarks.common import Run as Bench  # noqa: E402
from benchmarks.common import common_options  # noqa: E402
from harness.data.batches import DeviceSplit  # noqa: E402
from harness.data.datasets import DATASETS  # noqa: E402
from harness.measure.cost import device_name  # noqa: E402
from harness.networks.zoo import create_model  # noqa: E402
from harness.study.trial import prepare_model  # noqa: E402
from methods.base import MethodContext  # noqa: E402
from methods.training import freeze  # noqa: E402
from tests.torchvision_files import write_cifar10, write_mnist  # noqa: E402


@dataclass(frozen=True)
class Case:
    label: str
    dataset: str  # mnist | cifar10
    method: str  # scratch | kd | kdgan (its default knobs: discriminator and shared classifier on)
    student: str
    teacher: str | None
    images: int  # per timed epoch, at --scale 1


CASES = (
    Case("LeNet-5, MNIST-shaped", "mnist", "scratch", "lenet5", None, 16384),
    Case("LeNet-5 -> LeNet-5-half KD", "mnist", "kd", "lenet5_half", "lenet5", 16384),
    Case("ResNet-20, CIFAR-shaped", "cifar10", "scratch", "resnet20", None, 1536),
    Case("ResNet-56 -> ResNet-20 KD", "cifar10", "kd", "resnet20", "resnet56", 1536),
    Case("LeNet-5 -> LeNet-5-half KDGAN", "mnist", "kdgan", "lenet5_half", "lenet5", 16384),
)


class LoaderSource:
    """A torchvision data set + DataLoader as a method's training split: batches are
    collated on the host by the loader and copied to the device at every step."""

    def __init__(self, dataset, batch_size: int, workers: int, device: torch.device) -> None:
        self.dataset = dataset
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=device.type == "cuda")

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size, shuffle=False, augment=False, generator=None):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def data_root(dataset: str, n: int, scratch: Path) -> tuple[Path, str]:
    """A folder holding the data set in torchvision's format, and where it came from."""
    if dataset == "mnist":
        for root in (os.environ.get("HARNESS_DATA"), Path(__file__).resolve().parents[2] / "shared/datasets"):
            if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
                return Path(root), f"real MNIST from {root}"
        write_mnist(scratch, n)
        return scratch, "random images in MNIST's file format"
    import torchvision.datasets.cifar as tv_cifar

    write_cifar10(scratch, n)
    tv_cifar.check_integrity = lambda *a, **k: True  # our files, not the published md5s
    return scratch, "random images in CIFAR-10's file format"


def torchvision_dataset(dataset: str, root: Path, mean, std, augment: str):
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    steps = []
    if augment != "none":
        steps.append(T.RandomCrop(28 if dataset == "mnist" else 32, padding=4))
    if augment == "crop_flip":
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    cls = tvd.MNIST if dataset == "mnist" else tvd.CIFAR10
    return cls(str(root), train=True, download=False, transform=T.Compose(steps))


class Run:
    """The case's method training on one source: built and warmed up once, then timed per epoch."""

    def __init__(self, case: Case, source, raw, device: torch.device, batch_size: int, epochs: int,
                 channels_last: bool = False, compile: bool = False) -> None:
        torch.manual_seed(0)
        num_classes, shape = raw.num_classes, tuple(raw.train.x.shape[1:])

        def build(name: str) -> torch.nn.Module:
            return prepare_model(create_model(name, num_classes, 1.0, shape).to(device), channels_last, compile)

        ctx = MethodContext(student=build(case.student), teacher=freeze(build(case.teacher)) if case.teacher else None,
                            train=source, val=source, epochs=epochs + 1, device=device,
                            generator=torch.Generator(device=device).manual_seed(0),
                            input_shape=shape, num_classes=num_classes)
        method_cls = methods.METHODS.get(case.method)
        self.method = method_cls(ctx, method_cls.make_params({"batch_size": batch_size, "lr": 0.01}))
        self.images, self.device, self.epoch = len(source), device, 0
        self.speeds: list[float] = []
        started = time.perf_counter()
        self.step()  # warm-up: allocator, kernels, compilation, DataLoader workers
        self.warmup_s = time.perf_counter() - started
        self.speeds.clear()

    def step(self) -> None:
        sync(self.device)
        start = time.perf_counter()
        self.method.train_step(self.epoch)
        sync(self.device)
        self.epoch += 1
        self.speeds.append(self.images / (time.perf_counter() - start))

    @property
    def speed(self) -> float:
        return statistics.median(self.speeds)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PROMISES = {"speed": "images/s", "speedup": "x"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed epochs per pipeline, interleaved (after one warm-up); the median counts")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies each case's images per epoch")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DataLoader worker processes for the baseline's second row")
    parser.add_argument("--options", action="store_true", help="also time channels-last and torch.compile")
    parser.add_argument("--cases", default="", help=f"comma-separated case numbers (1-{len(CASES)}); default all")
    args = common_options(parser).parse_args()
    if args.smoke:
        args.scale, args.repeats, args.options, args.batch_size = 0.02, 1, True, 32
    bench = Bench(__file__, PROMISES, args)
    rows = []
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    print(f"device: {device_name(device)}; torch {torch.__version__}; batch {args.batch_size}; "
          f"median of {args.repeats} interleaved timed epochs after one warm-up")
    chosen = [CASES[int(i) - 1] for i in args.cases.split(",") if i] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        for case in chosen:
            n = int(case.images * args.scale)
            root, origin = data_root(case.dataset, n, Path(tmp) / case.dataset)
            raw = DATASETS.get(case.dataset)(root, False)
            raw = type(raw)(**{**raw.__dict__, "train": _first(raw.train, n)})
            print(f"\n{case.label} ({case.method}), {n} training images ({origin}), augment {raw.augment}")
            harness = DeviceSplit(raw.train, raw.mean, raw.std, device, raw.augment)
            tv = torch.utils.data.Subset(torchvision_dataset(case.dataset, root, raw.mean, raw.std, raw.augment),
                                         range(n))
            build = functools.partial(Run, case, raw=raw, device=device, batch_size=args.batch_size,
                                      epochs=args.repeats)
            runs = {"harness (device-resident)": build(harness)}
            for workers in sorted({0, args.workers}):
                runs[f"DataLoader, {workers} workers"] = build(LoaderSource(tv, args.batch_size, workers, device))
            if args.options:
                runs["harness + channels-last"] = build(harness, channels_last=True)
                runs["harness + torch.compile"] = build(harness, compile=True)
            for _ in range(args.repeats):  # interleaved, so that drift in the machine's speed hits all alike
                for run in runs.values():
                    run.step()
            ours = runs["harness (device-resident)"].speed
            loader = max(run.speed for label, run in runs.items() if label.startswith("DataLoader"))
            for label, run in runs.items():
                versus = (f"{ours / loader:5.2f}x the faster DataLoader" if label.startswith("harness (")
                          else f"{run.speed / ours:5.2f}x the harness default" if label.startswith("harness")
                          else "")
                extra = f" [warm-up {run.warmup_s:.0f} s]" if "compile" in label else ""
                print(f"  {label:<34} {run.speed:9.0f} img/s  {versus}{extra}", flush=True)
                bench.figure("speed", run.speed, case=case.label, pipeline=label)
                rows.append([case.label, label, f"{run.speed:,.0f}", versus.strip()])
            bench.figure("speedup", ours / loader, case=case.label, over="the faster DataLoader")
            runs.clear()
    bench.table("throughput", ["case", "pipeline", "images/s", "against"], rows)
    bench.finish()


def _first(split, n: int):
    return type(split)(split.x[:n], split.y[:n], split.source, split.index[:n])


if __name__ == "__main__":
    main()
