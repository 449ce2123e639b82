"""What failed: the kind of a failure, one name for each, in one place (the report, JSON, JUnit and the summary carry
its value)."""

from __future__ import annotations

import dataclasses
import enum


class FailureKind(str, enum.Enum):
    """The kind of a parity failure; its value is what reports show (``values``, ``onnxruntime-error`` ...)."""

    #: The comparison of one input set (``judge/compare.py``), in the order it checks.
    COUNT = "count"
    NAMES = "names"
    DTYPE = "dtype"
    SHAPE = "shape"
    NONFINITE = "nonfinite"
    VALUES = "values"
    #: A quantized variant below its metric thresholds (cosine, SNR, top-k agreement).
    METRICS = "metrics"
    #: ONNX Runtime raised on an input the model accepts, died (in the worker process), or never returned.
    ONNXRUNTIME_ERROR = "onnxruntime-error"
    ONNXRUNTIME_CRASH = "onnxruntime-crash"
    HUNG = "hung"
    #: The graph's declared interface, or the model itself, contradicts the dynamic axes (found without comparing).
    SHAPE_CONTRACT = "shape-contract"

    def __str__(self) -> str:
        return str(self.value)

    #: Hashed as its value, so that the strings a JSON report holds find their kind in a set of kinds.
    __hash__ = str.__hash__


#: Failures on an input that runs on both sides with outputs to compare: localization reruns them, the size split
#: sorts their sizes, the summary shows their figures.
COMPARED = frozenset({FailureKind.VALUES, FailureKind.NONFINITE, FailureKind.SHAPE, FailureKind.METRICS})


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why one output failed its comparison: the kind, and the sentence that says it."""

    kind: FailureKind
    text: str

    def __str__(self) -> str:
        return self.text
