"""An ONNX file's interface: load it, validate it (checker, strict shape inference), read inputs and outputs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import OnnxParityError, OnnxParityUsageError

Dims = list[int | str | None]


@dataclasses.dataclass(frozen=True)
class GraphInfo:
    path: str
    inputs: list[str]
    outputs: list[str]
    opset: int | None
    ir_version: int
    #: Per input / output: each dimension as an int (fixed), a str (symbolic) or None (unknown).
    input_dims: dict[str, Dims]
    output_dims: dict[str, Dims]
    #: numpy dtype names of the inputs (``float32``, ``int64``, ``bfloat16`` ...).
    input_dtypes: dict[str, str]
    #: Graph outputs that are indices (ArgMax, ArgMin, TopK): output -> (the values indexed, axis).
    index_sources: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    #: The op types of the graph's nodes.
    op_types: frozenset[str] = frozenset()

    def dims(self) -> dict[str, Dims]:
        """Declared dims of every input and output, by graph name."""
        return {**self.input_dims, **self.output_dims}

    def by_model_names(
        self, feed_names: Mapping[str, str], output_names: Sequence[str], by_graph_name: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``by_graph_name`` keyed by the model's names instead: inputs through ``feed_names`` (graph -> model),
        outputs by position."""
        names = {**{g: m for g, m in feed_names.items()}, **dict(zip(self.outputs, output_names))}
        return {names[g]: value for g, value in by_graph_name.items() if g in names}


def _dims(value: Any) -> Dims:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
        for d in value.type.tensor_type.shape.dim
    ]


def external_files(path: str | os.PathLike[str]) -> set[str]:
    """The external data files a model's initializers name, relative to the model's folder (a model over 2 GB
    cannot be one protobuf: its weights live beside it)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    return {
        entry.value for tensor in model.graph.initializer for entry in tensor.external_data if entry.key == "location"
    }


def file_size(path: str | os.PathLike[str]) -> int | None:
    """Bytes of a model on disk: the .onnx file and the external data files its tensors name."""
    try:
        folder = Path(path).parent
        files = external_files(path)
        return os.path.getsize(path) + sum(os.path.getsize(folder / f) for f in files if (folder / f).is_file())
    except Exception:  # a size is a figure for the table, never a reason to fail a check
        return None


def _dtype(value: Any) -> str:
    import numpy as np
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)).name


def inspect(path: str | os.PathLike[str], user_file: bool, validate: bool = True) -> GraphInfo:
    """Check the model with ``onnx.checker`` and strict shape inference (unless not ``validate``, or the model
    uses ops of another domain, such as the contrib ops ONNX Runtime's optimizer writes); read its interface.

    ``user_file`` words the errors for a file the user gave (``onnx_model=``) rather than one we exported.
    """
    import onnx

    file = Path(path)
    origin = "onnx_model" if user_file else "the exported model"
    shown = os.fspath(path)
    if not file.exists():
        raise OnnxParityUsageError(f"{origin} {shown!r} does not exist; pass the path of an .onnx file.")
    if not file.is_file():
        raise OnnxParityUsageError(f"{origin} {shown!r} is not a file; pass the path of an .onnx file.")
    try:
        model = onnx.load(os.fspath(file), load_external_data=False)
    except Exception as exc:
        raise OnnxParityUsageError(
            f"{origin} {shown!r} is not an ONNX model (it does not parse as an ONNX protobuf: {exc}); "
            "pass the .onnx file that torch.onnx.export / tf2onnx wrote."
        ) from exc
    if not model.graph.output:
        raise OnnxParityUsageError(
            f"{origin} {shown!r} has no graph outputs; is it really an ONNX model (an empty or "
            "unrelated protobuf parses as an empty model)?"
        )
    # ops of other domains (com.microsoft: what ONNX Runtime's optimizer writes) are known to their runtime only
    standard = all(o.domain in ("", "ai.onnx", "ai.onnx.ml") for o in model.opset_import)
    try:
        if validate and standard:
            onnx.checker.check_model(os.fspath(file))
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise OnnxParityError(converter_gap(exc) or f"{origin} {shown!r} is not a valid ONNX model: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    return GraphInfo(
        path=os.fspath(file),
        inputs=[i.name for i in inputs],
        outputs=[o.name for o in model.graph.output],
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        ir_version=int(model.ir_version),
        input_dims={i.name: _dims(i) for i in inputs},
        output_dims={o.name: _dims(o) for o in model.graph.output},
        input_dtypes={i.name: _dtype(i) for i in inputs},
        index_sources=_index_sources(model),
        op_types=frozenset(node.op_type for node in model.graph.node),
    )


def _index_sources(model: Any) -> dict[str, tuple[str, int]]:
    outputs = {o.name for o in model.graph.output}
    found = {}
    for node in model.graph.node:
        attrs = {a.name: a.i for a in node.attribute if a.type == a.INT}
        if node.op_type in ("ArgMax", "ArgMin") and node.output[0] in outputs:
            found[node.output[0]] = (node.input[0], attrs.get("axis", 0))
        elif node.op_type == "TopK" and len(node.output) > 1 and node.output[1] in outputs:
            found[node.output[1]] = (node.input[0], attrs.get("axis", -1))
    return found


def converter_gap(exc: BaseException) -> str | None:
    """A converter that left an op it has no conversion for (tf2onnx keeps unsupported TF ops in the graph)."""
    import re

    found = re.search(r"No Op registered for (\w+) with domain_version", str(exc))
    if found is None:
        return None
    op = found.group(1)
    fixes = {
        "Erfc": "Keras's exact gelu: use keras.activations.gelu(x, approximate=True) or a tanh-approximate GELU",
        "StatefulPartitionedCall": "a nested tf.function the converter could not inline (Keras 3 on TensorFlow "
        "compiles a grouped Conv (groups > 1, e.g. ConvNeXt's depthwise Conv2D) into a nested jit_compile "
        "tf.function on CPU: use keras.layers.DepthwiseConv2D for a depthwise convolution)",
        "PyFunc": "tf.numpy_function / tf.py_function runs Python code, which an ONNX graph cannot hold: express "
        "that computation with TensorFlow ops",
        "EagerPyFunc": "tf.py_function runs Python code, which an ONNX graph cannot hold: use TensorFlow ops",
    }
    hint = fixes.get(op, "rewrite that part of the model with ops the converter supports, or raise the opset")
    node = re.search(r"Name: (\S+) OpType", str(exc))
    where = f" at node {node.group(1)!r}" if node else ""
    return (
        f"the converter has no ONNX conversion for the TensorFlow op {op!r}{where}: it left the op in the graph, "
        f"which no ONNX runtime can run. Known cause and fix: {hint}."
    )
