"""pytest-onnxparity: prove an ONNX conversion is faithful, with property-based inputs.

Importing this package loads no framework, onnx, onnxruntime or hypothesis; :func:`check` imports
what a check needs when it runs.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OnnxParityError, OnnxParityUsageError, OnnxParityWarning
from .judge.figures import OutputFigures
from .report.parity import Failure, ParityMismatch, ParityReport

if TYPE_CHECKING:
    from .adapters import ExportResult, PreparedModel
    from .providers.registry import ProviderDefinition, Unavailable
    from .runners import Runner

__all__ = [
    "ExportResult",
    "Failure",
    "OnnxParityError",
    "OnnxParityUsageError",
    "OnnxParityWarning",
    "OutputFigures",
    "ParityMismatch",
    "ParityReport",
    "PreparedModel",
    "ProviderDefinition",
    "Runner",
    "Unavailable",
    "check",
]
try:
    __version__ = metadata.version("pytest-onnxparity")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

#: The types hook writers need (pytest_onnxparity_adapters, pytest_onnxparity_providers), imported on first use so
#: that importing the package stays cheap.
_EXTENSION_TYPES = {
    "ExportResult": "adapters",
    "PreparedModel": "adapters",
    "ProviderDefinition": "providers.registry",
    "Unavailable": "providers.registry",
    "Runner": "runners",
}


def __getattr__(name: str) -> Any:
    if name in _EXTENSION_TYPES:
        import importlib

        return getattr(importlib.import_module(f".{_EXTENSION_TYPES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from .providers.registry import parse_providers

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
