"""pytest-onnxparity: prove an ONNX conversion is faithful, with property-based inputs.

Importing this package loads no framework, onnx, onnxruntime or hypothesis; :func:`check` imports
what a check needs when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import OnnxParityError, OnnxParityUsageError, OnnxParityWarning, ParityMismatch
from .judge.figures import OutputFigures
from .report.parity import ParityReport

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


def check(
    model: Any, example_inputs: Any, provider: str = "cpu", workdir: str | Path | None = None, **options: Any
) -> ParityReport:
    """Check ``model`` against its ONNX conversion on ``provider``, outside pytest (an export script, a notebook).

    Same options as the ``onnx_parity`` fixture. Returns the :class:`ParityReport` (``report.passed``,
    ``report.text()``) and raises :class:`OnnxParityError` on bad input. The export goes to ``workdir``
    (default: a new temporary directory, kept for inspection).
    """
    import tempfile

    from .engine import check as engine
    from .options.settings import resolve
    from .runners.providers import parse_providers

    (short,) = parse_providers(provider)
    resolved = resolve(options, {}, {})
    if resolved.variants:
        raise OnnxParityUsageError(
            f"check() returns one report: variants={resolved.variants!r} would be several checks. Call check() "
            "once per variant with variant='...' (the fixture's variants= makes one test item per variant)."
        )
    where = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="onnxparity_"))
    prepared = engine.prepare(model, example_inputs, resolved)
    try:
        return engine.run(prepared, resolved, short, where).report
    finally:
        prepared.close()
