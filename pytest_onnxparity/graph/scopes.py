"""Which framework module (torch) or layer (Keras) each ONNX node came from, what each module outputs in the
graph, and how two graphs of one model differ (an artifact against a fresh export).

Exporters keep the module path: the dynamo exporter in ``pkg.torch.onnx.name_scopes`` metadata
(``['', 'blocks', 'blocks.3', 'blocks.3.act', 'leaky_relu']``), the TorchScript exporter in node names
(``/blocks/blocks.3/act/LeakyRelu``), tf2onnx in node names (``functional_1/dense_2_1/MatMul``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from typing import Any


def node_modules(model: Any, known: Iterable[str]) -> dict[str, str]:
    """ONNX node name -> the innermost of the ``known`` module (layer) names it belongs to."""
    names = set(known)
    out = {}
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if "pkg.torch.onnx.name_scopes" in meta:
            try:
                scopes = [s for s in ast.literal_eval(meta["pkg.torch.onnx.name_scopes"]) if s in names]
            except (ValueError, SyntaxError):
                scopes = []
            if scopes:
                out[node.name] = scopes[-1]
            continue
        found = _from_node_name(node.name, names)
        if found:
            out[node.name] = found
    return out


def _from_node_name(name: str, names: set[str]) -> str | None:
    """``/encoder/layer.1/attn/MatMul`` (TorchScript) or ``functional_1/dense_2_1/MatMul`` (tf2onnx)."""
    segments = [s for s in name.split("/") if s][:-1]
    path, innermost = "", None
    for segment in segments:
        path = segment if not path or segment.startswith(path + ".") else f"{path}.{segment}"
        for candidate in (path, segment, re.sub(r"_\d+$", "", segment)):
            if candidate in names:
                innermost = candidate
                break
    return innermost


def module_outputs(model: Any, scope: dict[str, str]) -> dict[str, list[str]]:
    """Module -> the values its nodes produce that something outside it consumes (its outputs in the graph)."""
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for value in node.input:
            consumers.setdefault(value, set()).add(node.name)
    graph_outputs = {o.name for o in model.graph.output}
    out: dict[str, list[str]] = {}
    members: dict[str, set[str]] = {}
    for node in model.graph.node:
        module = scope.get(node.name)
        for prefix in _prefixes(module) if module else []:
            members.setdefault(prefix, set()).add(node.name)
    for node in model.graph.node:
        for module, nodes in members.items():
            if node.name not in nodes:
                continue
            for value in node.output:
                outside = consumers.get(value, set()) - nodes
                if value and (outside or value in graph_outputs):
                    out.setdefault(module, []).append(value)
    return out


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def producers(model: Any) -> dict[str, Any]:
    """Value name -> the node that produces it."""
    return {value: node for node in model.graph.node for value in node.output}


def structural_diff(artifact: Any, fresh: Any, focus: Sequence[str] = ()) -> list[str]:
    """How ``artifact`` differs from a ``fresh`` export of the same model: ops, attributes, initializers.

    Nodes are matched by name where the two share names, else in order within each op type. Differences in
    ``focus`` nodes (the divergent module's) come first.
    """
    from onnx import helper, numpy_helper

    fresh_nodes = {n.name: n for n in fresh.graph.node}
    shared = sum(n.name in fresh_nodes for n in artifact.graph.node)
    pairs = (
        [(n, fresh_nodes.get(n.name)) for n in artifact.graph.node]
        if shared >= len(artifact.graph.node) // 2
        else _pair_in_order(artifact.graph.node, fresh.graph.node)
    )
    weights = {t.name: t for t in fresh.graph.initializer}
    artifact_weights = {t.name: t for t in artifact.graph.initializer}
    found: list[tuple[bool, str]] = []
    for mine, theirs in pairs:
        if theirs is None:
            found.append((mine.name in focus, f"node {mine.name!r} ({mine.op_type}) is not in a fresh export"))
            continue
        if mine.op_type != theirs.op_type:
            found.append(
                (
                    mine.name in focus,
                    f"node {mine.name!r} is {mine.op_type} in the artifact but {theirs.op_type} in a fresh export",
                )
            )
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in mine.attribute}
        expected = {a.name: helper.get_attribute_value(a) for a in theirs.attribute}
        for key in sorted(set(attrs) | set(expected)):
            if attrs.get(key) != expected.get(key):
                found.append(
                    (
                        mine.name in focus,
                        f"attribute {key} {_show(attrs.get(key))} in the artifact vs "
                        f"{_show(expected.get(key))} in a fresh export, on node "
                        f"{mine.name!r} ({mine.op_type})",
                    )
                )
        for slot, (a, b) in enumerate(zip(mine.input, theirs.input)):
            if a in artifact_weights and b in weights:
                left, right = numpy_helper.to_array(artifact_weights[a]), numpy_helper.to_array(weights[b])
                if left.shape != right.shape or not (left == right).all():
                    change = _weight_change(left, right)
                    found.append(
                        (
                            mine.name in focus,
                            f"initializer {a!r} (input {slot} of node {mine.name!r}, "
                            f"{mine.op_type}) differs from a fresh export: {change}",
                        )
                    )
    return [text for _, text in sorted(found, key=lambda f: not f[0])]


def _pair_in_order(mine: Sequence[Any], theirs: Sequence[Any]) -> list[tuple[Any, Any]]:
    by_type: dict[str, list[Any]] = {}
    for node in theirs:
        by_type.setdefault(node.op_type, []).append(node)
    seen: dict[str, int] = {}
    pairs = []
    for node in mine:
        k = seen[node.op_type] = seen.get(node.op_type, -1) + 1
        candidates = by_type.get(node.op_type, [])
        pairs.append((node, candidates[k] if k < len(candidates) else None))
    return pairs


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return repr(value.decode(errors="replace"))
    if isinstance(value, float):
        return f"{value:g}"
    return "(absent)" if value is None else repr(value)


def _weight_change(left: Any, right: Any) -> str:
    import numpy as np

    if left.shape != right.shape:
        return f"shape {tuple(left.shape)} vs {tuple(right.shape)}"
    diff = np.abs(left.astype(np.float64) - right.astype(np.float64))
    return f"{int((diff > 0).sum())} of {diff.size} values, max abs diff {float(diff.max()):.3g}"
