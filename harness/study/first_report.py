"""Before Ray starts: a method from outside the project is run to its first report on a few
images on this machine's CPU, so that a state its checkpoint cannot hold, or a method that
fails outright, is one line before the study instead of an error in every trial
(``harness check`` and ``harness sweep`` call it)."""
from __future__ import annotations

from methods.study import StudyError


class _FirstReport(Exception):
    pass


def check_first_report(spec, data, images: int = 64) -> None:
    """Run a method from outside the project up to its first report, on a few images on this
    machine's CPU, before Ray starts: a state its checkpoint cannot hold (methods.checkpoint)
    or a method that fails outright is one line now, not an error in every trial."""
    from dataclasses import replace

    from harness.networks.build import build_network
    from harness.spec.schema import BudgetSpec
    from harness.study.trial import run_trial
    from methods.checkpoint import UnsavedState

    def few(split):
        return replace(split, x=split.x[:images], y=split.y[:images], index=split.index[:images])

    small = replace(data, train=few(data.train), val=few(data.val), test=few(data.test))
    tiny = replace(spec, budget=BudgetSpec(epochs=2), resources=replace(spec.resources, gpu=0.0, compile=False))
    teacher = (build_network(spec.teacher, data.num_classes, data.input_shape, "teacher").state_dict()
               if spec.teacher is not None else None)  # untrained: the shapes are what matter here

    def report(metrics, state):
        raise _FirstReport

    try:
        run_trial({}, tiny, spec.seeds[0], small, teacher, report, checkpoints=True)
    except _FirstReport:
        return
    except UnsavedState as exc:
        raise StudyError(f"method '{spec.method}': {exc}") from None
    except Exception as exc:  # the user's code may fail in any way
        cause = (str(exc).strip().splitlines() or [""])[-1]
        raise StudyError(f"method '{spec.method}' failed before its first report, run on {images} images "
                         f"before the study: {type(exc).__name__}: {cause}") from None
