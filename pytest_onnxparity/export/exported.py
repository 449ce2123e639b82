"""The one place that produces the ONNX file a check runs: an export, the user's file, or the model itself.

:class:`ExportedModel` is what every later step reads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..graph import info as graph

if TYPE_CHECKING:
    from ..adapters import PreparedModel
    from ..options.settings import CheckOptions


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    path: str
    exporter: str
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    graph: graph.GraphInfo
    #: ``exported`` (this check), ``reused`` (earlier in the session), ``cached`` (--onnx-cache-dir),
    #: ``user file`` (onnx_model=) or ``model file`` (the model is an .onnx).
    origin: str
    seconds: float = 0.0
    #: The session's cache key of this export (None outside a session): what the model's provider items share.
    key: str | None = None
    #: A variant built from the export (``variants.py``) and the export it was built from.
    variant: str | None = None
    base_path: str | None = None

    def report_fields(self) -> dict[str, Any]:
        """What the export contributes to the report, under its field names."""
        return {
            "export_origin": self.origin,
            "onnx_path": self.path,
            "exporter": self.exporter,
            "opset": self.graph.opset,
            "export_notes": list(self.notes),
            "variant": self.variant,
            "onnx_size_bytes": graph.file_size(self.path),
        }

    @property
    def names_are_ours(self) -> bool:
        """Output names were written by the plugin's export, so they must match the model's."""
        return self.origin in ("exported", "reused", "cached")


def export(
    prepared: PreparedModel, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions, workdir: Path
) -> ExportedModel:
    """Export ``prepared`` into ``workdir`` (or take ``onnx_model=`` / the model's own file) and inspect it."""
    if options.onnx_model is not None:
        info = graph.inspect(options.onnx_model, user_file=True)
        variant = options.variant
        exporter = "user file (onnx_model=" + (f", variant={variant!r})" if variant else ")")
        return ExportedModel(options.onnx_model, exporter, (), (), info, "user file", variant=variant)
    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    result = prepared.export(workdir / "model.onnx", dynamic_axes, options)
    path = result.path or str(workdir / "model.onnx")
    info = graph.inspect(path, user_file=result.path is not None)
    warnings = list(result.warnings)
    if options.opset is not None and info.opset != options.opset and result.path is None:
        warnings.append(
            f"opset={options.opset} was asked for but the exporter wrote opset {info.opset} (it does not export "
            f"opset {options.opset}{'; see the export notes' if result.notes else ''})"
        )
    return ExportedModel(
        path,
        result.exporter,
        tuple(result.notes),
        tuple(warnings),
        info,
        "model file" if result.path else "exported",
        time.perf_counter() - start,
    )


#: What produces a check's ONNX file: :func:`export`, or the session's cache in front of it.
Exporter = Callable[["PreparedModel", Mapping[str, Mapping[int, str]], "CheckOptions", Path], ExportedModel]
