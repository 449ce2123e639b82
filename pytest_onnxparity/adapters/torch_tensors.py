"""torch tensors <-> numpy for the PyTorch adapter, and the model's output structure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityUsageError

if TYPE_CHECKING:
    import numpy as np
    import torch


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


def example_tensor(name: str, value: Any) -> torch.Tensor:
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


def tensors_in(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a module's output, in order (tuples, lists, dicts, ModelOutputs); other values skipped."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from tensors_in(value)
    elif isinstance(obj, (tuple, list)):
        for value in obj:
            yield from tensors_in(value)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            yield from tensors_in(getattr(obj, field.name))
