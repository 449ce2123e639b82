"""Copies of a graph that the runners need: bf16 inputs/outputs behind float32 casts (ONNX Runtime's Python
API has no bfloat16 arrays), and intermediate values made graph outputs (ties, localization)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


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
