"""PyTorch adapter: reference runs in eager mode, export with torch.onnx (dynamo, TorchScript fallback).

The user's tensors and model are only read: every run gets its own copy of every input, and the model's
parameters, buffers and training mode are put back as they were when the check ends.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityUsageError, OnnxParityWarning
from . import ExportResult, ModuleValues, call_model, input_names, output_names, outputs_on_example, positional_names
from .torch_tensors import example_tensor, flatten_outputs, from_numpy, tensors_in, to_numpy

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..options.settings import CheckOptions


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


#: Buffers and parameters indexed by position (a sinusoidal table, a learned position embedding, rotary caches).
POSITIONAL = re.compile(r"pos|rotary|rope|sinusoid|(^|[._])(pe|cos|sin|freqs?)(_|$|[._])", re.IGNORECASE)
#: Module attributes that bound a sequence's length.
LENGTH_ATTRIBUTES = (
    "max_len",
    "max_length",
    "max_seq_len",
    "max_seq_length",
    "max_sequence_length",
    "max_positions",
    "max_position_embeddings",
    "block_size",
    "context_length",
    "n_ctx",
)


def length_limits(model: torch.nn.Module) -> tuple[int, ...]:
    """Lengths the model's sequence axes may be bounded by, beyond ``nn.Embedding`` and the config: the leading
    (non-singleton) dimension of each position-like buffer or parameter of two or more dimensions, and every
    ``max_len``-like integer attribute of its modules. An axis takes the shortest of them that its example fits."""
    found = set()
    for name, tensor in [*model.named_buffers(), *model.named_parameters()]:
        dims = [d for d in tensor.shape if d != 1] if tensor.dim() >= 2 else []
        if dims and POSITIONAL.search(name) and len(dims) >= 2:
            found.add(int(dims[0]))
    for module in model.modules():
        for attribute in LENGTH_ATTRIBUTES:
            value = vars(module).get(attribute)
            if isinstance(value, int) and not isinstance(value, bool) and value > 1:
                found.add(value)
    return tuple(sorted(found))


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
        tensors = {name: example_tensor(name, value) for name, value in zip(names, values)}
        self._dtypes = {name: t.dtype for name, t in tensors.items()}
        self.example: dict[str, np.ndarray] = {name: to_numpy(t) for name, t in tensors.items()}
        self._call_names = derived
        self.device = "cpu"
        self._reference_model = model
        self._model64: Any = None
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
        self.length_limits = length_limits(model)
        config = getattr(model, "config", None)
        ids = {name: getattr(config, f"{name}_token_id", None) for name in ("pad", "bos", "eos")}
        #: transformers' special tokens, placed in generated ids as a tokenizer places them.
        self.special_ids = {name: i for name, i in ids.items() if isinstance(i, int) and not isinstance(i, bool)}
        named, self.code_files = outputs_on_example(lambda: flatten_outputs(self._forward(self._tensors(self.example))))
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
        named = call_model(lambda: self._forward(tensors), flatten_outputs, self._structure)
        return {name: to_numpy(t) for name, (_, t) in zip(self.output_names, named)}

    def intermediates(self, feed: Mapping[str, np.ndarray]) -> list[ModuleValues]:
        """Every submodule's inputs and outputs, in the order they finished. A module whose tensors cannot be
        read (a nested tensor of the TransformerEncoder fast path is read padded with NaN) is left out."""

        records: list[ModuleValues] = []

        def recorder(name: str) -> Any:
            def record(module: torch.nn.Module, args: Any, output: Any) -> None:
                where = type(module).__module__
                where = "torch.nn" if where.startswith("torch.nn.modules.") else where  # torch.nn.LeakyReLU
                kind = f"{where}.{type(module).__qualname__}"
                try:
                    outputs = [to_numpy(_dense(t)) for t in tensors_in(output)]
                    inputs = [to_numpy(_dense(t)) for t in tensors_in(args)]
                except Exception:  # a tensor with no dense view: that module gives no reference
                    return
                records.append(ModuleValues(name, kind, outputs, inputs))

            return record

        named = [(n, m) for n, m in self._reference_model.named_modules() if n]
        handles = [module.register_forward_hook(recorder(name)) for name, module in named]
        try:
            self._forward(self._tensors(feed))
        finally:
            for handle in handles:
                handle.remove()
        return records

    def infer_float64(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The model in float64 (a copy), for the reference's own rounding error; None where it cannot run so."""
        import copy

        import torch

        if self._model64 is None:
            floats = {t.dtype for t in [*self.model.parameters(), *self.model.buffers()] if t.is_floating_point()}
            if not floats <= {torch.float32, torch.float64}:
                return None
            self._model64 = copy.deepcopy(self.model).double().eval()
        tensors = [t.double() if t.is_floating_point() else t for t in self._tensors(feed)]
        try:
            with torch.no_grad():
                out = (
                    self._model64(**dict(zip(self._call_names, tensors))) if self._keyword else self._model64(*tensors)
                )
            return {name: t.detach().cpu().numpy() for name, (_, t) in zip(self.output_names, flatten_outputs(out))}
        except Exception:  # code that builds float32 tensors of its own cannot run in float64
            self._model64 = None
            return None

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
        from .torch_export import ExportCall, export

        tensors = self._tensors(self.example)
        args, kwargs = ((), dict(zip(self._call_names, tensors))) if self._keyword else (tuple(tensors), {})
        call = ExportCall(
            self.model, args, kwargs, list(self.example), self._call_names, list(self.output_names), self._output_ndims
        )
        return export(call, path, dynamic_axes, options)

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


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    """A nested tensor (the fast path of ``nn.TransformerEncoder`` with a padding mask) padded with NaN: positions
    the model did not compute, which localization leaves out."""
    return tensor.to_padded_tensor(float("nan")) if tensor.is_nested else tensor
