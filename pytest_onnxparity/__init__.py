"""pytest-onnxparity: prove an ONNX conversion is faithful, with property-based inputs.

Importing this package loads no framework, onnx, onnxruntime or hypothesis.
"""

from .errors import OnnxParityError, OnnxParityUsageError, OnnxParityWarning, ParityMismatch
from .report import ParityReport
from .spec import OutputResult

__all__ = [
    "OnnxParityError",
    "OnnxParityUsageError",
    "OnnxParityWarning",
    "OutputResult",
    "ParityMismatch",
    "ParityReport",
]
__version__ = "0.1.0"
