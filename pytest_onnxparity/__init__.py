"""pytest-onnxparity: prove an ONNX conversion is faithful, with property-based inputs.

Importing this package loads no framework, onnx, onnxruntime or hypothesis; :func:`check` imports
what a check needs when it runs.
"""

from __future__ import annotations

from typing import Any

from .compare import OutputFigures
from .errors import OnnxParityError, OnnxParityUsageError, OnnxParityWarning, ParityMismatch
from .report import ParityReport

__all__ = [
    "OnnxParityError",
    "OnnxParityUsageError",
    "OnnxParityWarning",
    "OutputFigures",
    "ParityMismatch",
    "ParityReport",
    "check",
]
__version__ = "0.2.0"


def check(model: Any, example_inputs: Any, provider: str = "cpu", **options: Any) -> ParityReport:
    """Check ``model`` against its ONNX conversion on ``provider``, outside pytest (an export script, a notebook).

    Same options as the ``onnx_parity`` fixture; returns the :class:`ParityReport` (``report.passed``).
    """
    from .engine import check as run_check

    return run_check(model, example_inputs, provider, **options)
