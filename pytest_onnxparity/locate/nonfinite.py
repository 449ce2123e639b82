"""A divergence only NaN/Inf inputs reveal: what differs, and the first ONNX node where the non-finite values part ways.

ONNX Runtime's MaxPool and ReduceMax drop a NaN that torch propagates (``[1, nan, -2, 3]``: torch ``nan``, ONNX
Runtime ``3``), so nearly every max-pooling CNN differs on such inputs: by default the divergence is a warning
(``edge_cases={"nonfinite": True}`` or ``--onnx-strict`` fail on it). The node is found on ONNX Runtime's own
intermediate values (optimizations off): the first node upstream of the divergent output that takes a NaN in and
gives none out (NaN dropped), or that makes a NaN from finite values (NaN made where the model has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..runners.onnxruntime import OrtRunner

if TYPE_CHECKING:
    import numpy as np

    from ..judge.compare import FailingCase
    from ..report.parity import Failure

#: Ops that select or test values: dropping a NaN is what they are for, in the model as in the graph.
SELECTING = frozenset({"Where", "IsNaN", "IsInf", "Shape", "Size", "ArgMax", "ArgMin", "TopK", "NonZero"})


def how_they_differ(reference: np.ndarray, onnx: np.ndarray) -> str:
    """What differs between the model's and ONNX Runtime's non-finite values, in words."""
    import numpy as np

    ref, got = np.asarray(reference, np.float64), np.asarray(onnx, np.float64)
    if ref.shape != got.shape:
        return f"the output's shape differs ({tuple(got.shape)} in ONNX, {tuple(ref.shape)} in the model)"
    dropped = int((np.isnan(ref) & ~np.isnan(got)).sum())
    made = int((np.isnan(got) & ~np.isnan(ref)).sum())
    if dropped:
        return f"NaN dropped: {dropped} value(s) are NaN in the model (it propagates the NaN) and finite in ONNX"
    if made:
        return f"NaN propagated: {made} value(s) are NaN in ONNX where the model's are not"
    infinite = int((np.isinf(ref) != np.isinf(got)).sum())
    return f"Inf differs: {infinite} value(s) are infinite on one side only" if infinite else "the values differ"


def first_node(graph: Any, values: Mapping[str, Any], output: str, how: str) -> tuple[str, str] | None:
    """(node name, op type) where the non-finite values part ways on the way to graph output ``output``, given every
    value of ONNX Runtime's run (``values``)."""
    import numpy as np

    made_by = {v: node for node in graph.node for v in node.output}
    upstream, todo = set(), [output]
    while todo:
        node = made_by.get(todo.pop())
        if node is not None and node.name not in upstream:
            upstream.add(node.name)
            todo += [v for v in node.input if v]

    def nan_in(names: Any) -> bool | None:
        arrays = [np.asarray(values[n]) for n in names if n in values]
        arrays = [a for a in arrays if a.dtype.kind == "f"]
        return any(bool(np.isnan(a).any()) for a in arrays) if arrays else None

    for node in graph.node:
        if node.name in upstream and node.op_type not in SELECTING:
            ins, outs = nan_in(node.input), nan_in(node.output)
            if outs is None:
                continue
            if (how.startswith("NaN dropped") and ins and not outs) or (
                how.startswith("NaN propagated") and not ins and outs
            ):
                return node.name, node.op_type
    node = made_by.get(output)
    return (node.name, node.op_type) if node is not None else None


def warning(failure: Failure, case: FailingCase, feed: Mapping[str, Any], path: str, localize: bool) -> list[str]:
    """The warning for a divergence set aside on NaN/Inf inputs, found on ``case`` (``feed``: its inputs keyed by the
    graph's input names)."""
    import onnx

    name = failure.output or ""
    reference = case.reference or {}
    how, where = str(failure.kind), ""
    try:
        graph = onnx.load(path, load_external_data=False).graph
        everything = [v for node in graph.node for v in node.output if v] if localize else []
        values = {**feed, **OrtRunner(path, "cpu", optimization="disabled", extra_outputs=everything).infer(feed)}
        if name in reference and list(reference).index(name) < len(graph.output):
            output = graph.output[list(reference).index(name)].name
            how = how_they_differ(reference[name], values[output])
            found = first_node(graph, values, output, how) if localize else None
            if found is not None:
                where = f"; they part ways at ONNX node {found[0]!r} ({found[1]})"
    except Exception as exc:  # naming the node must never hide the divergence itself
        where = f"; the node could not be singled out ({type(exc).__name__}: {str(exc)[:200]})"
    return [
        f"output {name!r} differs only on inputs holding NaN/Inf ({failure.recipe_text}): {how}{where}. ONNX "
        "Runtime's MaxPool and ReduceMax drop a NaN that torch propagates; if NaN/Inf can reach this model, pass "
        "edge_cases={'nonfinite': True} (or --onnx-strict) to fail on it, or {'nonfinite': False} to not feed them"
    ]
