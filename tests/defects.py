"""Realistic conversion defects planted in exported ONNX graphs with the ``onnx`` API.

Each function takes a ModelProto and returns an edited copy; the graph stays valid ONNX, so only a
parity check (not the checker) can tell it from the healthy one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _rewire(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Make every existing consumer of ``old`` read ``new`` instead."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in graph.output:
        if output.name == old:
            raise ValueError("rewiring a graph output is not supported here")


def _insert_after_input(model: onnx.ModelProto, input_name: str, nodes: list[onnx.NodeProto], out: str) -> None:
    """Put ``nodes`` (reading ``input_name``, producing ``out``) at the graph's start and feed ``out`` onward."""
    graph = model.graph
    _rewire(graph, input_name, out)
    for node in reversed(nodes):
        graph.node.insert(0, node)


def _const(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def weight_off(model: onnx.ModelProto, delta: float = 1e-3) -> onnx.ModelProto:
    """The largest weight matrix off by ``delta`` everywhere (a conversion or rounding slip)."""
    model = copy.deepcopy(model)
    weights = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2]
    target = max(weights, key=lambda t: int(np.prod(t.dims)))
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) + np.float32(delta), target.name))
    return model


def last_weight_scaled(model: onnx.ModelProto, factor: float) -> onnx.ModelProto:
    """The last layer's weight matrix times ``factor`` (a scale folded in twice, a dequantization slip): every
    output off by about ``factor - 1`` of itself."""
    model = copy.deepcopy(model)
    weights = {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2}
    last = next(n for n in reversed(model.graph.node) if n.op_type in ("Gemm", "MatMul") and n.input[1] in weights)
    target = weights[last.input[1]]
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(factor), target.name))
    return model


def relu_clipped_at_6(model: onnx.ModelProto) -> onnx.ModelProto:
    """Relu exported as Relu6 (Clip 0..6): only bites on large activations."""
    model = copy.deepcopy(model)
    graph = model.graph
    low = _const(graph, "planted_clip_low", np.array(0.0, np.float32))
    high = _const(graph, "planted_clip_high", np.array(6.0, np.float32))
    for index, node in enumerate(graph.node):
        if node.op_type == "Relu":
            clip = helper.make_node("Clip", [node.input[0], low, high], list(node.output), name=node.name + "_as_relu6")
            graph.node.remove(node)
            graph.node.insert(index, clip)
            return model
    raise ValueError("no Relu in the graph")


def nan_on_exact_zeros(model: onnx.ModelProto) -> onnx.ModelProto:
    """x * (x / x) on the first input: the identity, except NaN where an element is exactly 0 (missing epsilon)."""
    model = copy.deepcopy(model)
    name = model.graph.input[0].name
    nodes = [
        helper.make_node("Div", [name, name], ["planted_ratio"]),
        helper.make_node("Mul", [name, "planted_ratio"], ["planted_nan_on_zero"]),
    ]
    _insert_after_input(model, name, nodes, "planted_nan_on_zero")
    return model


def batch_fixed_at_1(model: onnx.ModelProto) -> onnx.ModelProto:
    """The first input's batch axis fixed at 1, as a tracer without dynamic axes writes it."""
    model = copy.deepcopy(model)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1
    return model


def _swap_first_two(values: Any) -> None:
    first, second = copy.deepcopy(values[0]), copy.deepcopy(values[1])
    values[0].CopyFrom(second)
    values[1].CopyFrom(first)


def outputs_swapped(model: onnx.ModelProto) -> onnx.ModelProto:
    """The first two graph outputs in the wrong order (consumers that read outputs by position get the wrong one)."""
    model = copy.deepcopy(model)
    _swap_first_two(model.graph.output)
    return model


def mask_ignored(model: onnx.ModelProto, mask_input: str) -> onnx.ModelProto:
    """The attention / padding mask is ignored: every position attends (int masks -> all 1, bool -> all False)."""
    model = copy.deepcopy(model)
    graph = model.graph
    value = next(i for i in graph.input if i.name == mask_input)
    if value.type.tensor_type.elem_type == TensorProto.BOOL:
        false = _const(graph, "planted_false", np.array(False))
        nodes = [helper.make_node("And", [mask_input, false], ["planted_mask_ignored"])]
    else:
        one = _const(graph, "planted_one", np.array(1, np.int64))
        nodes = [helper.make_node("Max", [mask_input, one], ["planted_mask_ignored"])]
    _insert_after_input(model, mask_input, nodes, "planted_mask_ignored")
    return model


def layernorm_epsilon(model: onnx.ModelProto, epsilon: float = 1e-2) -> onnx.ModelProto:
    """Every LayerNormalization gets a wrong epsilon (a framework default carried over)."""
    model = copy.deepcopy(model)
    changed = 0
    for node in model.graph.node:
        if node.op_type == "LayerNormalization":
            for attr in node.attribute:
                if attr.name == "epsilon":
                    attr.f = epsilon
                    changed += 1
    if not changed:
        raise ValueError("no LayerNormalization with an epsilon attribute")
    return model


def token_ids_clamped(model: onnx.ModelProto, input_name: str, high: int) -> onnx.ModelProto:
    """Token ids clamped to ``high`` (a vocabulary cut short): wrong only for large ids."""
    model = copy.deepcopy(model)
    graph = model.graph
    value = next(i for i in graph.input if i.name == input_name)
    dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    low_c = _const(graph, "planted_id_low", np.array(0, dtype))
    high_c = _const(graph, "planted_id_high", np.array(high, dtype))
    nodes = [helper.make_node("Clip", [input_name, low_c, high_c], ["planted_ids_clamped"])]
    _insert_after_input(model, input_name, nodes, "planted_ids_clamped")
    return model


def fp16_intermediate(model: onnx.ModelProto) -> onnx.ModelProto:
    """The first Gemm/MatMul result round-trips through float16 (precision drift of a half-precision graph)."""
    model = copy.deepcopy(model)
    graph = model.graph
    for index, node in enumerate(graph.node):
        if node.op_type in ("Gemm", "MatMul"):
            original = node.output[0]
            node.output[0] = "planted_fp32"
            casts = [
                helper.make_node("Cast", ["planted_fp32"], ["planted_fp16"], to=TensorProto.FLOAT16),
                helper.make_node("Cast", ["planted_fp16"], [original], to=TensorProto.FLOAT),
            ]
            for offset, cast in enumerate(casts, start=1):
                graph.node.insert(index + offset, cast)
            return model
    raise ValueError("no Gemm/MatMul in the graph")


def corrupt_from(model: onnx.ModelProto, start: int, axis: int, delta: float = 0.1) -> onnx.ModelProto:
    """The first output off by ``delta`` at indices >= ``start`` along ``axis``: a conversion that is right for
    the first rows (positions) only, as a kernel with a fixed tile or a cut-off table would be."""
    model = copy.deepcopy(model)
    graph = model.graph
    out = graph.output[0].name
    rank = len(graph.output[0].type.tensor_type.shape.dim)
    for node in graph.node:
        node.output[:] = [f"{o}__raw" if o == out else o for o in node.output]
        node.input[:] = [f"{i}__raw" if i == out else i for i in node.input]
    consts = {
        "planted_axis": np.array([axis], np.int64),
        "planted_zero": np.array(0, np.int64),
        "planted_one": np.array(1, np.int64),
        "planted_start": np.array(start, np.int64),
        "planted_shape": np.array([-1] + [1] * (rank - 1 - axis), np.int64),
        "planted_delta": np.array(delta, np.float32),
    }
    for name, value in consts.items():
        _const(graph, name, value)
    graph.node.extend(
        [
            helper.make_node("Shape", [f"{out}__raw"], ["planted_dims"]),
            helper.make_node("Gather", ["planted_dims", "planted_axis"], ["planted_len1"]),
            helper.make_node("Squeeze", ["planted_len1"], ["planted_len"]),
            helper.make_node("Range", ["planted_zero", "planted_len", "planted_one"], ["planted_index"]),
            helper.make_node("GreaterOrEqual", ["planted_index", "planted_start"], ["planted_late"]),
            helper.make_node("Cast", ["planted_late"], ["planted_late_f"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["planted_late_f", "planted_shape"], ["planted_mask"]),
            helper.make_node("Mul", ["planted_mask", "planted_delta"], ["planted_bump"]),
            helper.make_node("Add", [f"{out}__raw", "planted_bump"], [out]),
        ]
    )
    return model


#: (sample model, planting function, the failure kind the report must name,
#:  True where the user's own example input does not expose the defect)
Defect = tuple[str, Callable[[onnx.ModelProto], onnx.ModelProto], str, bool]

DEFECTS: dict[str, Defect] = {
    "weight_off_1e-3": ("mlp", weight_off, "values", False),
    "relu_clipped_at_6": ("cnn", relu_clipped_at_6, "values", True),
    "nan_on_exact_zeros": ("mlp", nan_on_exact_zeros, "nonfinite", True),
    "batch_fixed_at_1": ("cnn", batch_fixed_at_1, "shape-contract", False),
    "outputs_swapped": ("two_in_two_out", outputs_swapped, "names", False),
    "bert_attention_mask_ignored": ("bert", lambda m: mask_ignored(m, "attention_mask"), "values", False),
    "encoder_padding_mask_ignored": ("encoder", lambda m: mask_ignored(m, "padding_mask"), "values", False),
    "layernorm_epsilon": ("encoder", layernorm_epsilon, "values", False),
    # The example's largest id is 93 of a 100-token vocabulary: only ids 99 are clamped.
    "token_ids_clamped": ("lstm", lambda m: token_ids_clamped(m, "tokens", 98), "values", True),
    "fp16_intermediate": ("mlp", fp16_intermediate, "values", False),
}

#: The same kinds of defect in graphs that tf2onnx converted from Keras models.
KERAS_DEFECTS: dict[str, Defect] = {
    "weight_off_1e-3": ("batchnorm_dropout", weight_off, "values", False),
    "relu_clipped_at_6": ("cnn", relu_clipped_at_6, "values", True),
    "nan_on_exact_zeros": ("tf_function", nan_on_exact_zeros, "nonfinite", True),
    "batch_fixed_at_1": ("cnn", batch_fixed_at_1, "shape-contract", False),
    "outputs_swapped": ("two_in_two_out", outputs_swapped, "names", False),
    # The example's largest id is below 48 of a 50-token vocabulary: only ids 49 are clamped.
    "token_ids_clamped": ("lstm", lambda m: token_ids_clamped(m, "tokens", 48), "values", True),
}


def inputs_reordered(model: onnx.ModelProto) -> onnx.ModelProto:
    """The first two graph inputs listed in the wrong order (positional feeding swaps them)."""
    model = copy.deepcopy(model)
    _swap_first_two(model.graph.input)
    return model


def float16_interface(model: onnx.ModelProto) -> onnx.ModelProto:
    """The first input declared float16 (a half-precision conversion without keep_io_types), cast back inside."""
    model = copy.deepcopy(model)
    graph = model.graph
    name = graph.input[0].name
    graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    _insert_after_input(
        model, name, [helper.make_node("Cast", [name], ["planted_as_float"], to=TensorProto.FLOAT)], "planted_as_float"
    )
    return model


def table_truncated(model: onnx.ModelProto, name: str, rows: int) -> onnx.ModelProto:
    """Initializer ``name`` cut to its first ``rows`` rows (a position table exported for a shorter maximum
    length): the graph fails on every sequence longer than ``rows``."""
    model = copy.deepcopy(model)
    (table,) = [t for t in model.graph.initializer if t.name == name]
    table.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(table)[:rows].copy(), name))
    del model.graph.value_info[:]  # the exporter's inferred shapes still say the full length
    return model
