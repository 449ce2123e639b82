"""PyTorch adapter: reference runs in eager mode, export with torch.onnx (dynamo, TorchScript fallback).

The user's tensors and model are only read: every run gets its own copy of every input, and the model's
parameters, buffers and training mode are put back as they were when the check ends.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelRejected, OnnxParityError, OnnxParityUsageError, OnnxParityWarning
from . import ExportResult, input_names, output_names, outputs_on_example, positional_names, quiet, short_error

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..settings import CheckOptions


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


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A host numpy copy; bfloat16 becomes ``ml_dtypes.bfloat16`` (numpy has no bfloat16 of its own)."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    if tensor.is_complex():
        raise OnnxParityUsageError("the model returned a complex tensor; ONNX Runtime has no complex tensors.")
    return tensor.numpy().copy()


def from_numpy(array: np.ndarray, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A new tensor (never a view of ``array``): a model that writes into its input changes nothing of ours."""
    import numpy as np
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16).to(device)
    return torch.from_numpy(np.array(array, copy=True)).to(device, dtype)


def _example_tensor(name: str, value: Any) -> torch.Tensor:
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.array(value, copy=True))
    if not isinstance(value, torch.Tensor):
        raise OnnxParityUsageError(
            f"example input {name!r} is a {type(value).__name__}; pass torch tensors (or numpy arrays), "
            "as one tensor, a tuple of positional inputs, or a dict of keyword inputs."
        )
    if value.layout != torch.strided:
        raise OnnxParityUsageError(
            f"example input {name!r} is a {value.layout} tensor; ONNX inputs are dense: "
            "pass .to_dense() and let the model take dense tensors."
        )
    if value.is_complex():
        raise OnnxParityUsageError(
            f"example input {name!r} is complex ({value.dtype}); ONNX Runtime has no complex "
            "tensors: pass the real and imaginary parts as two inputs."
        )
    if value.device.type == "meta":
        raise OnnxParityUsageError(f"example input {name!r} is on the meta device (no values); pass real tensors.")
    return value


#: transformers config keys that bound a sequence axis.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_source_positions", "max_target_positions")


def sequence_limit(model: torch.nn.Module) -> int | None:
    """The longest sequence the model takes: its transformers config, else its position embedding table."""
    import torch

    config = getattr(model, "config", None)
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    tables = [
        m.num_embeddings
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Embedding) and re.search(r"pos", name, re.IGNORECASE)
    ]
    return min(tables) if tables else None


class PreparedTorchModel:
    name = "torch"

    def __init__(self, model: torch.nn.Module, example_inputs: Any, options: CheckOptions) -> None:
        import torch

        self.model = model
        if any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()]):
            raise OnnxParityUsageError(
                f"{type(model).__name__} has parameters on the meta device (shapes without values): load real weights "
                "first (model.to_empty(device='cpu') then load_state_dict(...))."
            )
        self._was_training = model.training
        self._state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
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
        names = input_names(options.input_names, derived)
        tensors = {name: _example_tensor(name, value) for name, value in zip(names, values)}
        self._dtypes = {name: t.dtype for name, t in tensors.items()}
        self.example: dict[str, np.ndarray] = {name: to_numpy(t) for name, t in tensors.items()}
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
        self.sequence_limit = sequence_limit(model)
        named = outputs_on_example(lambda: flatten_outputs(self._forward(self._tensors(self.example))))
        derived_outputs = [n for n, _ in named]
        self._output_ndims = [t.dim() for _, t in named]
        self._structure = derived_outputs
        self.output_names_meaningful = options.output_names is not None or not positional_names(derived_outputs)
        self.output_names = output_names(options.output_names, derived_outputs)

    def _positional_names(self, count: int) -> list[str]:
        try:
            params = list(inspect.signature(self.model.forward).parameters.values())
        except (TypeError, ValueError):
            params = []
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:count]
        return names + [f"input_{i}" for i in range(len(names), count)]

    def _tensors(self, feed: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
        return [from_numpy(feed[name], self._dtypes[name], self.device) for name in self.example]

    def _forward(self, tensors: list[torch.Tensor]) -> Any:
        import torch

        with torch.no_grad():
            if self._keyword:
                return self._reference_model(**dict(zip(self._call_names, tensors)))
            return self._reference_model(*tensors)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = self._tensors(feed)
        try:
            result = self._forward(tensors)
        except Exception as exc:  # raised inside the user's model: an input outside what it accepts
            raise ModelRejected(exc) from exc
        named = flatten_outputs(result)
        if [n for n, _ in named] != self._structure:
            raise OnnxParityError(
                f"the model returned the outputs {[n for n, _ in named]} here but {self._structure} on the example: "
                "an ONNX graph has a fixed set of outputs, so an output structure that depends on the input (a "
                "variable-length list) cannot be exported faithfully. Return a fixed structure (stack the list)."
            )
        return {name: to_numpy(t) for name, (_, t) in zip(self.output_names, named)}

    def timed_call(self, feed: Mapping[str, np.ndarray]) -> tuple[Callable[[], Any], str]:
        """What a deployment runs: eval mode under ``torch.inference_mode``, tensors built beforehand."""
        import torch

        tensors = self._tensors(feed)
        model = self._reference_model

        def call() -> Any:
            with torch.inference_mode():
                out = model(**dict(zip(self._call_names, tensors))) if self._keyword else model(*tensors)
            # .cpu() waits for the device, so a timed call includes all GPU work.
            return [t.cpu() for _, t in flatten_outputs(out)]

        return call, f"torch eager, eval mode, torch.inference_mode() on {self.device}"

    def place(self, provider: str) -> str:
        """Run the reference on the provider's device where torch has it (a copy: the user's model stays put)."""
        import copy

        import torch

        if provider in ("cuda", "tensorrt") and torch.cuda.is_available() and self.device == "cpu":
            self.device = "cuda"
            self._reference_model = copy.deepcopy(self.model).to(self.device)
        return self.device

    def export(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions) -> ExportResult:
        order = ("dynamo", "torchscript") if options.exporter == "auto" else (options.exporter,)
        reasons: list[str] = []
        for exporter in order:
            try:
                with quiet(
                    "torch", "torch.onnx", "torch.export", "torch._dynamo", "torch.__trace", "onnxscript"
                ) as said:
                    if exporter == "dynamo":
                        self._export_dynamo(path, dynamic_axes, options)
                    else:
                        self._export_torchscript(path, dynamic_axes, options)
            except Exception as exc:  # the exporters raise many types; all mean "this exporter failed"
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

    def _args_kwargs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        tensors = self._tensors(self.example)
        if self._keyword:
            return (), dict(zip(self._call_names, tensors))
        return tuple(tensors), {}

    def _export_dynamo(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions) -> None:
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
            opset_version=options.opset,
            dynamic_shapes=shapes if dims else None,
        )

    def _export_torchscript(
        self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions
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
            opset_version=options.opset or 17,
            dynamic_axes=axes or None,
        )

    def fingerprint(self) -> str:
        """What the export depends on besides the options: the model's class, structure, parameters and buffers."""
        import hashlib

        import torch

        digest = hashlib.blake2b(f"{type(self.model).__module__}.{type(self.model).__qualname__}".encode())
        digest.update(repr(self.model).encode())
        for key, value in self._state.items():
            digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": str(torch.__version__)}

    def close(self) -> None:
        """Put back the parameters and buffers (a forward that updates state ran many times) and the mode."""
        import torch

        with torch.no_grad():
            for key, value in self.model.state_dict(keep_vars=True).items():
                saved = self._state.get(key)
                if saved is not None and saved.shape == value.shape and not torch.equal(saved, value.detach()):
                    value.detach().copy_(saved)
        if self._was_training:
            self.model.train()


def prepare(model: Any, example_inputs: Any, options: CheckOptions) -> PreparedTorchModel:
    return PreparedTorchModel(model, example_inputs, options)
