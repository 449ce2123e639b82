"""Which framework module (torch) or layer (Keras) each ONNX node came from, what each module outputs in the
graph, and how two graphs of one model differ (an artifact against a fresh export).

Exporters keep the module path: the dynamo exporter in ``pkg.torch.onnx.name_scopes`` metadata
(``['', 'blocks', 'blocks.3', 'blocks.3.act', 'leaky_relu']``), the TorchScript exporter in node names
(``/blocks/blocks.3/act/LeakyRelu``), tf2onnx in node names (``functional_1/dense_2_1/MatMul``).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable
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


def module_inputs(model: Any, scope: dict[str, str]) -> dict[str, list[str]]:
    """Module -> the values its nodes take from outside it (not weights or constants): its inputs in the graph."""
    fixed = {t.name for t in model.graph.initializer} | {
        v for n in model.graph.node if n.op_type == "Constant" for v in n.output
    }
    made_in = {v: scope.get(n.name, "") for n in model.graph.node for v in n.output}
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        module = scope.get(node.name)
        for prefix in _prefixes(module) if module else []:
            entering = out.setdefault(prefix, [])
            for value in node.input:
                source = made_in.get(value, "")
                inside = source == prefix or source.startswith(prefix + ".")
                if value and value not in fixed and not inside and value not in entering:
                    entering.append(value)
    return out


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def producers(model: Any) -> dict[str, Any]:
    """Value name -> the node that produces it."""
    return {value: node for node in model.graph.node for value in node.output}


def source(node: Any) -> str:
    """Where the exporter says a node came from: the user's Python line (dynamo's stack trace), else its scope
    (dynamo's name scopes, or the TorchScript / tf2onnx node name's path); "" when it recorded neither."""
    meta = {p.key: p.value for p in node.metadata_props}
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', meta.get("pkg.torch.onnx.stack_trace", ""))
    users = [f for f in frames if not re.search(r"[/\\]site-packages[/\\]torch[/\\]", f[0])]
    if users:  # the innermost frame of the user's code, not torch's own modules
        path, line, function, code = users[-1]
        return f"{path.rsplit('/', 1)[-1]}:{line} in {function}(): {code.strip()[:80]}"
    try:
        names = [s for s in ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]")) if s]
    except (ValueError, SyntaxError):
        names = []
    if len(names) > 1:
        return f"scope {'.'.join(names[:-1])!r}"
    path = "/".join([s for s in node.name.split("/") if s][:-1])
    return f"scope {path!r}" if path else ""


@dataclasses.dataclass(frozen=True)
class Difference:
    """One way an artifact differs from a fresh export: on which node (of the artifact, or of the fresh export for
    a node the artifact lacks), and in words."""

    node: str
    op_type: str
    text: str
    #: The node is on the divergent path (the divergent module's, or the node named).
    focus: bool = False
    #: The node is the fresh export's, missing from the artifact.
    removed: bool = False


def exporter_of(model: Any) -> str | None:
    """How a file was exported, as its producer and node names tell: ``dynamo`` (scope metadata, ``node_linear``),
    ``torchscript`` (``/layers.1/self_attn/q_proj/MatMul``), or None (another tool: matched by structure)."""
    if model.producer_name != "pytorch":
        return None
    if any(p.key == "pkg.torch.onnx.name_scopes" for n in model.graph.node for p in n.metadata_props):
        return "dynamo"
    return "torchscript"


def structural_diff(artifact: Any, fresh: Any, focus: Iterable[str] = ()) -> list[Difference]:
    """How ``artifact`` differs from a ``fresh`` export of the same model, both ways: nodes it lacks, nodes it adds,
    nodes whose op, attributes or weights changed.

    Nodes are paired by structure (op type, where their inputs come from, their weights), names helping where the
    two share them, so a file from another exporter is compared like with like. Differences on ``focus`` nodes
    (the divergent path) come first, then in graph order.
    """
    from onnx import helper, numpy_helper

    focus = set(focus)
    pairs, counterpart = _pair(artifact.graph, fresh.graph)
    mine_weights = {t.name: t for t in artifact.graph.initializer}
    their_weights = {t.name: t for t in fresh.graph.initializer}
    matched = {id(theirs) for theirs in pairs.values()}
    found: list[tuple[int, Difference]] = []

    def add(spot: int, node: Any, text: str, removed: bool = False, on_path: bool | None = None) -> None:
        on_path = node.name in focus if on_path is None else on_path
        found.append((spot, Difference(node.name, node.op_type, text, on_path, removed)))

    mine_nodes = list(artifact.graph.node)
    replaced = _replaced(mine_nodes, pairs, [n for n in fresh.graph.node if id(n) not in matched], counterpart)
    matched |= {id(theirs) for theirs in replaced.values()}
    consumers = {v: n for n in fresh.graph.node for v in n.input}
    paired_back = {id(theirs): mine for mine, theirs in ((m, pairs.get(i)) for i, m in enumerate(mine_nodes))}
    for spot, node in enumerate(fresh.graph.node):
        if id(node) in matched:
            continue
        after = next((consumers[v] for v in node.output if v in consumers), None)
        mine_after = paired_back.get(id(after)) if after is not None else None
        where = f" (its consumer there is {mine_after.name!r}, {mine_after.op_type})" if mine_after is not None else ""
        add(
            spot,
            node,
            f"node {node.name!r} ({node.op_type}) of a fresh export is missing from the artifact{where}",
            removed=True,
            on_path=mine_after is not None and mine_after.name in focus,
        )
    for spot, mine in enumerate(mine_nodes):
        theirs = pairs.get(spot)
        if spot in replaced:
            was = replaced[spot]
            add(
                spot,
                mine,
                f"node {mine.name!r} is {mine.op_type} in the artifact where a fresh export has {was.name!r} "
                f"({was.op_type})",
            )
            continue
        if theirs is None:
            add(spot, mine, f"node {mine.name!r} ({mine.op_type}) is in the artifact but not in a fresh export")
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in mine.attribute}
        expected = {a.name: helper.get_attribute_value(a) for a in theirs.attribute}
        for key in sorted(set(attrs) | set(expected)):
            if attrs.get(key) != expected.get(key):
                add(
                    spot,
                    mine,
                    f"attribute {key} {_show(attrs.get(key))} in the artifact vs {_show(expected.get(key))} in a "
                    f"fresh export, on node {mine.name!r} ({mine.op_type})",
                )
        for slot, (a, b) in enumerate(zip(mine.input, theirs.input)):
            if a in mine_weights and b in their_weights:
                left, right = numpy_helper.to_array(mine_weights[a]), numpy_helper.to_array(their_weights[b])
                if left.shape != right.shape or not (left == right).all():
                    add(
                        spot,
                        mine,
                        f"initializer {a!r} (input {slot} of node {mine.name!r}, {mine.op_type}) differs from a "
                        f"fresh export: {_weight_change(left, right)}",
                    )
    return [d for _, d in sorted(found, key=lambda f: (not f[1].focus, f[0]))]


#: How far (in nodes of one op type) the structural pairing looks for a node's counterpart.
WINDOW = 64


def _pair(mine: Any, theirs: Any) -> tuple[dict[int, Any], dict[str, str]]:
    """Artifact node index -> its counterpart in the fresh export, in graph order: of the unpaired nodes of the same
    op type nearby, the one whose inputs come from the most counterparts (then the same weights, the same name).
    Also each artifact value -> the fresh export's value it corresponds to."""
    import numpy as np
    from onnx import numpy_helper

    counterpart: dict[str, str] = dict(zip(_feeds(mine), _feeds(theirs)))
    mine_weights = {t.name: t for t in mine.initializer}
    their_weights = {t.name: t for t in theirs.initializer}
    by_type: dict[str, list[tuple[int, Any]]] = {}
    for node in theirs.node:
        by_type.setdefault(node.op_type, []).append((len(by_type.get(node.op_type, [])), node))
    seen: dict[str, int] = {}
    taken: set[int] = set()
    pairs: dict[int, Any] = {}

    def same_weight(a: str, b: str) -> bool:
        left, right = mine_weights[a], their_weights[b]
        return list(left.dims) == list(right.dims) and left.data_type == right.data_type

    def score(node: Any, other: Any) -> int:
        points = 4 * (node.name == other.name and bool(node.name))
        for a, b in zip(node.input, other.input):
            if counterpart.get(a) == b and a:
                points += 3
            elif a in mine_weights and b in their_weights:
                points += (
                    (a == b)
                    + same_weight(a, b)
                    + (
                        same_weight(a, b)
                        and np.array_equal(
                            numpy_helper.to_array(mine_weights[a]), numpy_helper.to_array(their_weights[b])
                        )
                    )
                )
        return points + (len(node.input) == len(other.input))

    for index, node in enumerate(mine.node):
        k = seen[node.op_type] = seen.get(node.op_type, -1) + 1
        nearby = [(o, n) for o, n in by_type.get(node.op_type, []) if abs(o - k) <= WINDOW and id(n) not in taken]
        if not nearby:
            continue
        points, _, best = max(((score(node, n), -abs(o - k), n) for o, n in nearby), key=lambda c: c[:2])
        if node.input and points <= 1:  # nothing it takes comes from its would-be counterpart: a node added
            continue
        taken.add(id(best))
        pairs[index] = best
        counterpart.update(zip(node.output, best.output))
    return pairs, counterpart


def _replaced(
    mine: list[Any], pairs: dict[int, Any], unpaired: list[Any], counterpart: dict[str, str]
) -> dict[int, Any]:
    """Artifact nodes of another op type in place of a fresh export's node (a Relu exported as Clip): an unpaired
    node with the same name, or taking the same value first."""
    out: dict[int, Any] = {}
    for index, node in enumerate(mine):
        if index in pairs:
            continue
        taken = counterpart.get(node.input[0]) if node.input else None
        was = next((n for n in unpaired if n.name == node.name or (taken and n.input[:1] == [taken])), None)
        if was is not None:
            out[index] = was
            unpaired.remove(was)
    return out


def _feeds(graph: Any) -> list[str]:
    weights = {t.name for t in graph.initializer}
    return [v.name for v in graph.input if v.name not in weights]


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
