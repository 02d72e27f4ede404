"""``ptq``: post-training static quantization to INT8, no training: the baseline every
deployment tries first.

The network is the teacher itself (or, in a chain, the student a parent study trained).
The method trains nothing; its knobs say how the harness quantizes it after its one
report (harness.measure.quantize: ONNX Runtime's static QDQ quantizer, calibrated on
training images only), and the trial's accuracy and size are the quantized network's,
so the search ranks quantization settings by what they cost in accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from methods.base import Method, MethodContext, register_method
from methods.knobs import COUNT, Bounds, knob
from methods.study import StudyError, StudyView


@dataclass
class PTQParams:
    calibration: int = knob(256, COUNT, help="training images that calibrate the activations' ranges")
    per_channel: bool = knob(True, help="weights quantized per output channel (else one scale per tensor)")
    symmetric: bool = knob(False, help="activations int8 around zero (else uint8 with a zero point)")
    calibrate: str = knob("minmax", choices=("minmax", "entropy", "percentile"),
                          help="how activation ranges are chosen from the calibration images")
    percentile: float = knob(99.999, Bounds(90, 100, low_open=True),
                             help="with calibrate: percentile, the share of activations inside the range")


@register_method("ptq")
class PostTrainingQuantization(Method):
    Params = PTQParams
    family = "quantization"
    quantizes = True

    def __init__(self, ctx: MethodContext, params: PTQParams) -> None:
        super().__init__(ctx, params)
        if not ctx.student_trained:  # the baseline: the teacher's own weights
            ctx.student.load_state_dict(ctx.teacher.state_dict())

    @classmethod
    def check_spec(cls, study: StudyView) -> None:
        if study.epochs != 1:
            raise StudyError(f"budget.epochs: ptq trains nothing and reports once; set it to 1, not {study.epochs}")
        if not study.student_trained and study.student != study.teacher:
            raise StudyError("student: ptq quantizes the teacher itself; give the teacher's network as the student "
                             "(or a chain's, student: {from_study: ...})")

    def train_step(self, epoch: int) -> dict[str, float]:
        return {}

    @classmethod
    def quantization(cls, params: PTQParams) -> dict[str, Any]:
        return {f.name: getattr(params, f.name) for f in fields(PTQParams)}
