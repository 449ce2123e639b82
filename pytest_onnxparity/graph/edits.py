"""Copies of a graph that the runners need: bf16 inputs/outputs behind float32 casts (ONNX Runtime's Python
API has no bfloat16 arrays), intermediate values made graph outputs (ties, localization), and every float value
rounded to a provider's reduced precision (what that precision explains)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def host_types(path: str, workdir: Path) -> tuple[str, set[str]]:
    """ONNX Runtime's Python API has no bfloat16 arrays: put bf16 graph inputs and outputs behind float32 casts.

    Returns the file to run (``path`` itself when nothing is bf16) and the outputs to hand back as bf16.
    """
    import onnx
    from onnx import TensorProto, helper

    bf16 = TensorProto.BFLOAT16
    header = onnx.load(path, load_external_data=False)
    initializers = {i.name for i in header.graph.initializer}
    if not any(
        v.type.tensor_type.elem_type == bf16
        for v in [*header.graph.input, *header.graph.output]
        if v.name not in initializers
    ):
        return path, set()
    model = onnx.load(path)
    graph = model.graph
    renamed: dict[str, str] = {}
    casts = []
    for value in graph.input:
        if value.name not in initializers and value.type.tensor_type.elem_type == bf16:
            renamed[value.name] = f"{value.name}__bf16"
            casts.append(helper.make_node("Cast", [value.name], [renamed[value.name]], to=bf16))
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    outputs = {v.name for v in graph.output if v.type.tensor_type.elem_type == bf16}
    for node in graph.node:
        node.output[:] = [f"{name}__bf16" if name in outputs else name for name in node.output]
        node.input[:] = [f"{name}__bf16" if name in outputs else name for name in node.input]
    tail = [helper.make_node("Cast", [f"{name}__bf16"], [name], to=TensorProto.FLOAT) for name in outputs]
    for value in graph.output:
        if value.name in outputs:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = [*casts, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    target = workdir / "host_types.onnx"
    onnx.save(model, str(target))
    return str(target), outputs


def with_outputs(path: str, names: Sequence[str], target: Path) -> str:
    """A copy of the graph at ``path`` that also outputs the intermediate values ``names`` (in that order).

    Types come from shape inference where it knows them; ONNX Runtime accepts outputs without one too.
    """
    import onnx
    from onnx import helper

    model = onnx.load(path)
    present = {o.name for o in model.graph.output}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input]}
    except Exception:  # a graph shape inference cannot follow: outputs without types still run
        known = {}
    for name in names:
        if name not in present:
            model.graph.output.append(known.get(name) or helper.make_empty_tensor_value_info(name))
    onnx.save(model, str(target))
    return str(target)


#: Significant bits (the implicit one included) each reduced precision keeps of a float32 value.
SIGNIFICANT_BITS = {"bf16": 8, "f16": 11, "tf32": 11}


def rounding_nodes(value: str, rounded: str, precision: str) -> list[Any]:
    """Nodes that write ``value`` rounded to ``precision`` (and back to float32) as ``rounded``.

    bf16 and f16 go through a Cast (f16 with its range: a value past 65504 becomes Inf, as on the device); TF32 has
    no ONNX type, so its 11 significant bits come from Veltkamp's split (``t = x * (2**13 + 1)``,
    ``hi = t - (t - x)``), which rounds to nearest in float32 arithmetic.
    """
    from onnx import TensorProto, helper

    if precision in ("bf16", "f16"):
        low = TensorProto.BFLOAT16 if precision == "bf16" else TensorProto.FLOAT16
        return [
            helper.make_node("Cast", [value], [f"{rounded}__low"], to=low),
            helper.make_node("Cast", [f"{rounded}__low"], [rounded], to=TensorProto.FLOAT),
        ]
    factor = float(2 ** (24 - SIGNIFICANT_BITS[precision]) + 1)
    split = helper.make_tensor(f"{rounded}__c", TensorProto.FLOAT, [], [factor])
    return [
        helper.make_node("Constant", [], [f"{rounded}__c"], value=split),
        helper.make_node("Mul", [value, f"{rounded}__c"], [f"{rounded}__t"]),
        helper.make_node("Sub", [f"{rounded}__t", value], [f"{rounded}__d"]),
        helper.make_node("Sub", [f"{rounded}__t", f"{rounded}__d"], [rounded]),
    ]


def rounded(path: str, precision: str, target: Path) -> str:
    """A copy of the graph that computes as a ``precision`` device does at worst: every float32 value (graph
    inputs, weights, every node's outputs) rounded to ``precision``. Run on ONNX Runtime's CPU provider, its
    distance from the float32 run measures what that precision alone moves each output on the same input."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(path)
    graph = model.graph
    try:
        typed = onnx.shape_inference.infer_shapes(model).graph
        types = {v.name: v.type.tensor_type.elem_type for v in [*typed.value_info, *typed.input, *typed.output]}
    except Exception:  # no types: only what the graph declares is rounded
        types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({i.name: i.data_type for i in graph.initializer})
    floats = {name for name, kind in types.items() if kind == TensorProto.FLOAT}
    # Inputs and weights: rounded once at the top, their consumers read the rounded copy.
    sources = [v.name for v in [*graph.input, *graph.initializer] if v.name in floats]
    renamed = {name: f"{name}__rounded" for name in dict.fromkeys(sources)}
    nodes = [n for name in renamed for n in rounding_nodes(name, renamed[name], precision)]
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        nodes.append(node)
        for index, out in enumerate(node.output):
            if out in floats:
                node.output[index] = f"{out}__raw"
                nodes += rounding_nodes(f"{out}__raw", out, precision)
    for output in graph.output:  # a graph input passed straight through is an output too
        if output.name in renamed:
            nodes.append(onnx.helper.make_node("Identity", [renamed[output.name]], [f"{output.name}__out"]))
            output.name = f"{output.name}__out"
    del graph.node[:]
    graph.node.extend(nodes)
    large = sum(len(i.raw_data) for i in graph.initializer) > 2**30  # a protobuf holds at most 2 GB
    onnx.save(model, str(target), save_as_external_data=large, location=f"{target.name}.data")
    return str(target)
