"""torch.onnx export for the PyTorch adapter: dynamo first, the TorchScript tracer as a reported fallback."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError
from . import ExportResult, quiet, short_error, write_error

if TYPE_CHECKING:
    from ..options.settings import CheckOptions

_LOGGERS = ("torch", "torch.onnx", "torch.export", "torch._dynamo", "torch.__trace", "onnxscript")


@dataclasses.dataclass(frozen=True)
class ExportCall:
    """How the model is called on its example: what torch.onnx.export needs besides the options."""

    model: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: The ONNX input names, and the forward() argument names that take them.
    input_names: list[str]
    call_names: list[str]
    output_names: list[str]
    output_ndims: list[int]


def export(
    call: ExportCall, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions
) -> ExportResult:
    """Export with ``options.exporter`` ("auto": dynamo, then TorchScript with both reasons kept)."""
    order = ("dynamo", "torchscript") if options.exporter == "auto" else (options.exporter,)
    reasons: list[str] = []
    for exporter in order:
        try:
            with quiet(*_LOGGERS) as said:
                (_dynamo if exporter == "dynamo" else _torchscript)(call, path, dynamic_axes, options)
        except Exception as exc:  # the exporters raise many types; all mean "this exporter failed"
            unwritten = write_error(exc, path, f"torch.onnx.export ({exporter})")
            if unwritten is not None:
                raise unwritten from exc
            reasons.append(f"{exporter} exporter failed: {short_error(exc)}")
            continue
        notes = [f"{exporter} exporter warned: {w}" for w in said if re.search(r"opset", w, re.IGNORECASE)]
        fallback = []
        if reasons:
            notes += reasons
            fallback = [
                f"exported with the {exporter} fallback because {reasons[0].split(':', 2)[-1].strip()[:200]} "
                "(full reasons in export_notes); a traced graph may have frozen shapes or Python branches"
            ]
        return ExportResult(exporter, notes, fallback)
    hint = ""
    if any("DynamicCache" in r or "past_key_values" in r for r in reasons):
        hint = " A transformers model with its key/value cache on: pass use_cache=False in its config."
    raise OnnxParityError(
        "torch.onnx.export failed.\n  " + "\n  ".join(reasons) + "\n  Fix: make the model exportable "
        "(torch.export rejects data-dependent Python control flow: use torch.where / torch.cond), or export "
        "it yourself and pass the file as onnx_model=..." + hint
    )


def _dynamo(call: ExportCall, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions) -> None:
    import torch

    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        ident = re.sub(r"\W", "_", name)
        ident = ident if ident[:1].isalpha() else f"d_{ident}"
        return dims.setdefault(ident, torch.export.Dim(ident))

    per_input = [{axis: dim(d) for axis, d in dynamic_axes.get(name, {}).items()} or None for name in call.input_names]
    shapes: Any = dict(zip(call.call_names, per_input)) if call.kwargs else tuple(per_input)
    _torch_onnx_export(call, path, dynamo=True, opset_version=options.opset, dynamic_shapes=shapes if dims else None)


def _torchscript(
    call: ExportCall, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions
) -> None:
    axes = {name: dict(a) for name, a in dynamic_axes.items() if a}
    batch_dims = {d for a in dynamic_axes.values() for axis, d in a.items() if axis == 0}
    if len(batch_dims) == 1:
        # Without this TorchScript writes the example's batch size into the output shapes.
        (batch,) = batch_dims
        axes.update({name: {0: batch} for name, nd in zip(call.output_names, call.output_ndims) if nd})
    _torch_onnx_export(call, path, dynamo=False, opset_version=options.opset or 17, dynamic_axes=axes or None)


def _torch_onnx_export(call: ExportCall, path: Path, **exporter_options: Any) -> None:
    import torch

    torch.onnx.export(
        call.model,
        call.args,
        str(path),
        kwargs=call.kwargs or None,
        input_names=call.input_names,
        output_names=call.output_names,
        **exporter_options,
    )
