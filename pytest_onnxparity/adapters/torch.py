"""PyTorch adapter: reference runs in eager mode, export with torch.onnx (dynamo, TorchScript fallback)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError, OnnxParityUsageError, OnnxParityWarning
from . import ExportResult, input_names, output_names, outputs_on_example, positional_names, quiet, short_error

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..settings import Settings


def flatten_outputs(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a model's outputs in torch.export's (pytree) order, naming each leaf from the structure.

    A lone tensor is ``output``; tuple/list positions are ``output_0``...; dict, ModelOutput and dataclass
    keys keep their names (``logits``, ``hidden.0``); ``None`` entries are dropped, as the exporter does.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        return [(prefix or "output", obj)]
    if obj is None:
        return []
    if isinstance(obj, Mapping):
        items = list(obj.items())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, (tuple, list)):
        items = [(i, v) for i, v in enumerate(obj)]
        if not prefix:
            return [leaf for i, v in items for leaf in flatten_outputs(v, f"output_{i}")]
    else:
        raise OnnxParityUsageError(
            f"the model returned a {type(obj).__name__} at {prefix or 'its output'}; ONNX outputs are tensors, "
            "so return tensors (or tuples / dicts of tensors) from forward()."
        )
    out = []
    for key, value in items:
        out.extend(flatten_outputs(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


class PreparedTorchModel:
    framework = "torch"

    def __init__(self, model: torch.nn.Module, example_inputs: Any, settings: Settings) -> None:
        import torch

        self.model = model
        self._was_training = model.training
        if model.training:
            warnings.warn(
                OnnxParityWarning(
                    f"{type(model).__name__} was in training mode; onnx_parity put it in eval mode for the check "
                    "(dropout and batch-norm statistics would make outputs random) and restores it afterwards. "
                    "Call model.eval() before onnx_parity() to silence this."
                ),
                stacklevel=4,
            )
            model.eval()
        self._keyword = isinstance(example_inputs, Mapping)
        if isinstance(example_inputs, Mapping):
            values = list(example_inputs.values())
            derived = [str(k) for k in example_inputs]
        else:
            values = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [example_inputs]
            derived = self._positional_names(len(values))
        names = input_names(settings.input_names, derived)
        self.example: dict[str, np.ndarray] = {}
        self._example_dtypes: dict[str, torch.dtype] = {}
        for name, value in zip(names, values):
            if not isinstance(value, torch.Tensor):
                import numpy as np

                if not isinstance(value, np.ndarray):
                    raise OnnxParityUsageError(
                        f"example input {name!r} is a {type(value).__name__}; pass torch tensors (or numpy arrays), "
                        "as one tensor, a tuple of positional inputs, or a dict of keyword inputs."
                    )
                value = torch.from_numpy(value)
            self._example_dtypes[name] = value.dtype
            self.example[name] = value.detach().cpu().numpy()
        self._call_names = derived
        self.device = "cpu"
        self._reference_model = model
        self.int_high_hints = tuple(
            sorted(
                {
                    m.num_embeddings
                    for m in model.modules()
                    if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))
                }
            )
        )
        self.model_dynamic_axes: dict[str, dict[int, str]] = {}
        self.source_onnx: str | None = None
        named = outputs_on_example(lambda: flatten_outputs(self._call(self.example)))
        derived_outputs = [n for n, _ in named]
        self._output_ndims = [t.dim() for _, t in named]
        self.output_names_meaningful = settings.output_names is not None or not positional_names(derived_outputs)
        self.output_names = output_names(settings.output_names, derived_outputs)

    def _positional_names(self, count: int) -> list[str]:
        try:
            params = list(inspect.signature(self.model.forward).parameters.values())
        except (TypeError, ValueError):
            params = []
        names = []
        for p in params:
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(p.name)
        names = names[:count]
        return names + [f"input_{i}" for i in range(len(names), count)]

    def _tensors(self, feed: Mapping[str, np.ndarray], device: str = "cpu") -> list[torch.Tensor]:
        import torch

        return [torch.from_numpy(feed[name]).to(device, self._example_dtypes[name]) for name in self.example]

    def _call(self, feed: Mapping[str, np.ndarray]) -> Any:
        return self._forward(self._tensors(feed, self.device))

    def _forward(self, tensors: list[torch.Tensor]) -> Any:
        import torch

        with torch.no_grad():
            if self._keyword:
                return self._reference_model(**dict(zip(self._call_names, tensors)))
            return self._reference_model(*tensors)

    def runner(self, feed: Mapping[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """A call that runs the model on ``feed`` with the tensors already built (for timing)."""
        tensors = self._tensors(feed, self.device)
        # .cpu() waits for the device, so a timed call includes all GPU work.
        return lambda: [t.detach().cpu().numpy() for _, t in flatten_outputs(self._forward(tensors))]

    def place(self, provider: str) -> str:
        """Run the reference on the provider's device where torch has it (a copy: the user's model stays put)."""
        import copy

        import torch

        if provider in ("cuda", "tensorrt") and torch.cuda.is_available() and self.device == "cpu":
            self.device = "cuda"
            self._reference_model = copy.deepcopy(self.model).to(self.device)
        return self.device

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.runner(feed)()

    def export(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], settings: Settings) -> ExportResult:
        order = ("dynamo", "torchscript") if settings.exporter == "auto" else (settings.exporter,)
        reasons: list[str] = []
        for exporter in order:
            try:
                with quiet("torch", "torch.onnx", "torch.export", "torch._dynamo", "torch.__trace", "onnxscript"):
                    if exporter == "dynamo":
                        self._export_dynamo(path, dynamic_axes, settings)
                    else:
                        self._export_torchscript(path, dynamic_axes, settings)
            except Exception as exc:  # the exporters raise many types; all mean "this exporter failed"
                reasons.append(f"{exporter} exporter failed: {short_error(exc)}")
                continue
            notes = []
            if reasons:
                notes = [
                    *reasons,
                    (
                        "fell back to the TorchScript exporter, which traces one input: shapes and Python branches "
                        "may be frozen into the graph"
                    ),
                ]
            return ExportResult(exporter, notes)
        raise OnnxParityError(
            "torch.onnx.export failed.\n  " + "\n  ".join(reasons) + "\n  Fix: make the model exportable "
            "(torch.export rejects data-dependent Python control flow: use torch.where / torch.cond), or export "
            "it yourself and pass the file as onnx_model=..."
        )

    def _args_kwargs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        tensors = self._tensors(self.example)
        if self._keyword:
            return (), dict(zip(self._call_names, tensors))
        return tuple(tensors), {}

    def _export_dynamo(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], settings: Settings) -> None:
        import torch

        dims: dict[str, Any] = {}

        def dim(name: str) -> Any:
            ident = re.sub(r"\W", "_", name)
            ident = ident if ident[:1].isalpha() else f"d_{ident}"
            return dims.setdefault(ident, torch.export.Dim(ident))

        per_input = [{axis: dim(d) for axis, d in dynamic_axes.get(name, {}).items()} or None for name in self.example]
        args, kwargs = self._args_kwargs()
        shapes: Any = dict(zip(self._call_names, per_input)) if self._keyword else tuple(per_input)
        torch.onnx.export(
            self.model,
            args,
            str(path),
            kwargs=kwargs or None,
            dynamo=True,
            input_names=list(self.example),
            output_names=list(self.output_names),
            opset_version=settings.opset,
            dynamic_shapes=shapes if dims else None,
        )

    def _export_torchscript(
        self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], settings: Settings
    ) -> None:
        import torch

        args, kwargs = self._args_kwargs()
        axes = {name: dict(a) for name, a in dynamic_axes.items() if a}
        batch_dims = {d for a in dynamic_axes.values() for axis, d in a.items() if axis == 0}
        if len(batch_dims) == 1:
            # Without this TorchScript writes the example's batch size into the output shapes.
            (batch,) = batch_dims
            axes.update({name: {0: batch} for name, nd in zip(self.output_names, self._output_ndims) if nd})
        torch.onnx.export(
            self.model,
            args,
            str(path),
            kwargs=kwargs or None,
            dynamo=False,
            input_names=list(self.example),
            output_names=list(self.output_names),
            opset_version=settings.opset or 17,
            dynamic_axes=axes or None,
        )

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": str(torch.__version__)}

    def close(self) -> None:
        if self._was_training:
            self.model.train()


def prepare(model: Any, example_inputs: Any, settings: Settings) -> PreparedTorchModel:
    return PreparedTorchModel(model, example_inputs, settings)
