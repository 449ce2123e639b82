"""Where a failing check diverges, worked out on the failing input only, within a time budget.

1. **Which stage broke it**: the *conversion* (ONNX Runtime's CPU provider differs with its optimizations
   off), a *runtime optimization* (off agrees, on differs: the level where it starts), or the *provider*
   (the CPU provider agrees on the same graph).
2. **Where**: the first module (torch) or layer (Keras) whose output diverges, in execution order, and the
   ONNX nodes that produce it; for a provider, the first node whose output differs from the CPU provider's.
3. **What**: for a user's artifact, how it differs from a fresh export of the model (ops, attributes,
   initializers), the differences on the divergent path first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import adapters
from ..graph import scopes
from ..judge.compare import compare, compare_values
from ..judge.kinds import COMPARED
from ..runners.onnxruntime import OrtRunner
from .divergence import CLEAR, Divergence, is_layer

if TYPE_CHECKING:
    from ..adapters import ModuleValues, PreparedModel
    from ..export.exported import ExportedModel
    from ..judge.compare import FailingCase
    from ..judge.tolerance import TolerancePolicy
    from ..options.settings import CheckOptions

#: The failures worth localizing: a failing input that runs on both sides.
LOCALIZED = COMPARED
LEVELS = ("basic", "extended", "all")


def _within(scope: str, module: str) -> bool:
    return scope == module or scope.startswith(module + ".")


def why(exc: BaseException) -> str:
    """One line saying why a localization step stopped."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def localize(
    found: Divergence,
    prepared: PreparedModel,
    exported: ExportedModel,
    provider: str,
    check: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    case: FailingCase,
    feed: dict[str, Any],
    policy: TolerancePolicy,
    workdir: Path,
) -> None:
    """Rerun the failing input to name the stage, the first divergent module/node and (artifacts) what differs,
    into ``found`` as it goes (what is found stands if a later step raises).

    ``feed`` is the failing input keyed by the graph's input names (``case.feed`` by the model's); a fresh export
    to compare a user's file with goes to ``workdir``, the check's own folder, never beside the user's file.
    """
    import onnx

    started = time.monotonic()
    deadline = started + check.localize_budget
    options = check.provider_options.get(provider, {})
    graph = onnx.load(exported.path, load_external_data=False)
    reference = case.reference or {}
    everything = [v for node in graph.graph.node for v in node.output if v]
    ours_is_reference = prepared.name == "onnxruntime-cpu"
    found.stage, found.stage_detail, level = _stage(
        exported.path, feed, reference, policy, provider, options, ours_is_reference, case
    )
    if found.stage == "provider" and time.monotonic() < deadline:
        _first_node(found, exported.path, graph, provider, options, feed, policy, everything)
    elif found.stage == "conversion" and time.monotonic() < deadline:
        runner = OrtRunner(exported.path, "cpu", optimization="disabled", extra_outputs=everything)
        values = {**feed, **runner.infer(feed)}  # graph inputs too: the repro subgraph may take them
        try:
            records = adapters.layer_outputs(prepared, case.feed)
            _walk(found, graph, records, values, policy)
            if not found.nodes:
                found.notes.append("no module or layer of the model maps to a graph value (no hooks or scope names)")
        except Exception as exc:  # the module map failed: the graph's own outputs still say where it shows
            found.notes.append(f"the model's modules could not be held against the graph: {why(exc)}")
        if not found.nodes:
            _first_output(found, graph, exported, values, reference, policy)
    elif level:
        found.notes.append(
            f"save the graph as optimized at level '{level}' (SessionOptions.optimized_model_filepath)"
            " and compare it with the unoptimized one to see the rewrite"
        )
    if exported.origin == "user file" and time.monotonic() < deadline:
        fresh = workdir / "fresh_export"
        try:
            fresh.mkdir(parents=True, exist_ok=True)
            _differences(found, prepared, graph, exported.path, fresh, axes, check)
        except Exception as exc:  # the model cannot be exported here: the structural comparison is skipped
            found.notes.append(f"no fresh export to compare the artifact with: {type(exc).__name__}: {exc}"[:300])
    if time.monotonic() > deadline:
        found.notes.append(
            f"localization stopped at its time budget ({check.localize_budget:g} s, option localize_budget)"
        )
    found.seconds = round(time.monotonic() - started, 3)


def _differences(
    found: Divergence,
    prepared: PreparedModel,
    graph: Any,
    path: str,
    fresh: Path,
    axes: Mapping[str, Mapping[int, str]],
    check: CheckOptions,
) -> None:
    """The artifact against a fresh export made the way it was (its exporter and opset): what differs, the
    divergent path first; a difference inside the divergent module names its node first."""
    import onnx

    opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)
    exporters = list(dict.fromkeys([scopes.exporter_of(graph) or check.exporter, check.exporter]))
    for exporter in exporters:  # the file's own exporter first; failing that, the check's (paired by structure)
        like = dataclasses.replace(check, onnx_model=None, exporter=exporter, opset=opset or check.opset)
        try:
            result = prepared.export(fresh / "model.onnx", axes, like)
            break
        except Exception as exc:  # this exporter cannot export the model here
            if exporter == exporters[-1]:
                raise
            found.notes.append(f"the fresh export is not made the way the file was ({exporter}): {why(exc)}")
    artifact = onnx.load(path)
    focus = found.focus or found.nodes
    differences = scopes.structural_diff(artifact, onnx.load(result.path or str(fresh / "model.onnx")), focus)
    found.differences = [d.text for d in differences[:8]]
    # where a conversion starts to differ: a difference inside the divergent module, or (no module map) the first
    # difference in graph order; a node of no module was named by its own value already
    changed = [d for d in differences if not d.removed]
    first = None
    if found.stage == "conversion" and (found.from_outputs or not found.nodes):
        first = next(iter(changed), None)
    elif found.stage == "conversion" and found.module:
        first = next((d for d in changed if d.focus and d.node in focus), None)
    if first is not None and first.node not in found.nodes[:1]:
        found.nodes, found.op_types = [first.node, *found.nodes], [first.op_type, *found.op_types]
        found.source = ""  # it was the output node's


def _first_output(
    found: Divergence,
    graph: Any,
    exported: ExportedModel,
    values: Mapping[str, Any],
    reference: Mapping[str, Any],
    policy: TolerancePolicy,
) -> None:
    """Without a module map: the graph output (topological order) that differs from the model's, named by the
    node that computes it and where the exporter says that node came from."""
    names = dict(zip(exported.graph.outputs, reference))  # graph output -> the model's name, by position
    made_by = scopes.producers(graph)
    order = {v: i for i, node in enumerate(graph.graph.node) for v in node.output}
    for value in sorted((v for v in names if v in values and v in made_by), key=order.__getitem__):
        expected, got = reference[names[value]], values[value]
        if getattr(expected, "shape", None) != got.shape or expected.dtype.kind != "f":
            continue
        atol, rtol = policy.for_output(names[value], expected.dtype.name)
        figures, worst, _ = compare_values(value, expected, got.astype(expected.dtype), atol, rtol, noise_factor=0)
        if figures.tolerance_used > 1:
            node = made_by[value]
            found.nodes, found.op_types = [node.name], [node.op_type]
            found.max_abs_diff, found.allowed = figures.max_abs_diff, worst[0]["allowed"] if worst else 0.0
            found.source, found.from_outputs = scopes.source(node), True
            return


def _stage(
    path: str,
    feed: dict[str, Any],
    reference: dict[str, Any],
    policy: TolerancePolicy,
    provider: str,
    options: Mapping[str, str],
    ours_is_reference: bool,
    case: FailingCase,
) -> tuple[str, str, str]:
    """(stage, why, optimization level): the CPU provider unoptimized against the model first, then the target
    provider with optimizations off and at each level up."""
    if ours_is_reference:
        return "provider", "the reference is this graph on ONNX Runtime's CPU provider", ""

    def passes(short: str, optimization: str) -> bool:
        runner = OrtRunner(path, short, options if short == provider else None, optimization=optimization)
        on_reference = {r: case.context[r] for r in reference if r in case.context}
        return compare(reference, runner.infer(feed), policy, check_names=False, context=on_reference).passed

    if not passes("cpu", "disabled"):
        return "conversion", "the graph differs from the model with ONNX Runtime's optimizations off", ""
    if provider != "cpu" and not passes(provider, "disabled"):
        return "provider", f"ONNX Runtime's CPU provider agrees with the model on the same graph, {provider} not", ""
    for level in LEVELS:
        if not passes(provider, level):
            return "runtime optimization", f"agrees with optimizations off, differs from level '{level}' on", level
    return "unknown", "the failing input now passes at every optimization level (not deterministic?)", ""


@dataclasses.dataclass
class _Held:
    """A graph value held against a framework value: a module's (layer's) output or one of its inputs."""

    value: str
    position: int
    module: str
    kind: str
    role: str
    used: float
    diff: float
    allowed: float
    array: Any


def _walk(
    found: Divergence,
    graph: Any,
    records: list[ModuleValues],
    values: Mapping[str, Any],
    policy: TolerancePolicy,
) -> None:
    """The first graph value (topological order) that diverges from the framework's value it maps to, and how the
    error grows after it.

    Each module's (layer's) outputs, and each torch module's inputs, are held against the graph values they map to
    (by scope name, else by shape among the values no scope claims): a module's input that diverges where the
    module before it did not names the op between them (a functional call such as ``F.interpolate``).
    """
    scope = scopes.node_modules(graph, [r.name for r in records])
    outputs, inputs = scopes.module_outputs(graph, scope), scopes.module_inputs(graph, scope)
    made_by = scopes.producers(graph)
    position = {v: i for i, node in enumerate(graph.graph.node) for v in node.output}
    unscoped = [v for node in graph.graph.node if node.name not in scope for v in node.output if v in values]
    held: list[_Held] = []
    after = -1  # layers without a scope are looked for after the last layer found
    for record in records:
        claimed = [v for v in outputs.get(record.name, []) if v in values]
        if not claimed and is_layer(record.kind):  # tf2onnx names some layers' nodes by op only (Resize__21)
            claimed = [v for v in unscoped if position[v] > after]
        elif not claimed and not _passes_through(record):  # its node replaced in the file, without its scope
            claimed = [v for v in unscoped if _fed_by(record, made_by[v], values, policy)]
        entering = [v for v in inputs.get(record.name, []) if v in values]
        for role, arrays, names in (("output", record.outputs, claimed), ("input", record.inputs, entering)):
            best = _best_match(arrays, names, values, policy) if names and arrays else None
            if best is None and role == "output" and len(claimed) == len(arrays) == 1:  # its output, another shape
                best = _Match(claimed[-1], float("inf"), 0.0, 0.0, arrays[-1])
            if best is not None:
                spot = position.get(best.value, -1)
                held.append(
                    _Held(
                        best.value, spot, record.name, record.kind, role, best.used, best.diff, best.allowed, best.array
                    )
                )
                after = max(after, spot) if role == "output" else after
    held.sort(key=lambda h: (h.position, h.role != "output"))  # stable: the innermost module first
    first = next((h for h in held if h.used > CLEAR), None) or next((h for h in held if h.used > 1), None)
    if first is None:
        return
    node = made_by.get(first.value)
    found.nodes = [node.name] if node is not None else [first.value]
    found.op_types = [node.op_type] if node is not None else ["?"]
    found.max_abs_diff, found.allowed = first.diff, first.allowed
    grows = {h.module: h.diff for h in held[held.index(first) + 1 :] if h.role == "output" and h.used > 1}
    found.after = [f"{module}: max abs diff {diff:.3g}" for module, diff in grows.items()][-3:]
    if first.role == "input" and node is not None:  # an op of no module (or of an enclosing one) broke it
        found.source = scopes.source(node)
        found.feeds = f"{first.kind.rsplit('.', 1)[-1]} {first.module!r}"
        entering = [v for v in node.input if v in values]
        found.repro = (entering, [first.value], dict(values), {first.value: first.array})
        found.focus = [node.name]
        return
    found.module, found.module_type = first.module, first.kind
    if first.used == float("inf"):
        shape = tuple(getattr(values[first.value], "shape", ()))
        found.notes.append(f"its output has shape {shape} in the graph but {tuple(first.array.shape)} in the model")
    members = [n for n in graph.graph.node if _within(scope.get(n.name, ""), first.module)]
    found.focus = [n.name for n in members] or found.nodes
    produced = {v for n in members for v in n.output}
    entering = list(dict.fromkeys(v for n in members for v in n.input if v and v not in produced and v in values))
    found.repro = (entering, [first.value], dict(values), {first.value: first.array})


def _same(a: Any, b: Any) -> bool:
    return bool(a.shape == b.shape and a.dtype == b.dtype and (a == b).all())


def _fed_by(record: ModuleValues, node: Any, values: Mapping[str, Any], policy: TolerancePolicy) -> bool:
    """Whether ``node`` takes what the module took (a node standing in for the module's own)."""
    taken = [v for v in node.input if v in values]
    best = _best_match(record.inputs, taken, values, policy) if taken and record.inputs else None
    return best is not None and best.used <= 1


def _passes_through(record: ModuleValues) -> bool:
    """A module that hands on its input (Dropout or Identity in eval) computes nothing of its own to be named for."""
    return any(_same(a, b) for a in record.outputs for b in record.inputs)


@dataclasses.dataclass(frozen=True)
class _Match:
    """A graph value held against a framework array: the share of its tolerance used, its max abs diff, what was
    allowed there, and the framework's array (in the layout that matched)."""

    value: str
    used: float
    diff: float
    allowed: float
    array: Any


def _best_match(
    arrays: Sequence[Any], candidates: list[str], values: Mapping[str, Any], policy: TolerancePolicy
) -> _Match | None:
    """Of the graph values with an output's shape, the closest. A channels-last array (Keras) is also held against
    the channels-first layout tf2onnx computes in."""
    import numpy as np

    best: _Match | None = None
    for original in arrays:
        layouts = [original] + ([np.moveaxis(original, -1, 1)] if original.ndim >= 3 else [])
        for name in candidates:
            got = values[name]
            for array in layouts:
                if getattr(got, "shape", None) != array.shape or got.dtype.kind != array.dtype.kind:
                    continue
                expected, got = array, got.astype(array.dtype)
                if array.dtype.kind == "f" and np.isnan(array).any() and not np.isnan(got).any():
                    # NaN where the framework computed nothing (a nested tensor's padding): compare the rest only
                    expected, got = array[~np.isnan(array)], got[~np.isnan(array)]
                atol, rtol = policy.for_output(name, array.dtype.name)
                figures, worst, _ = compare_values(name, expected, got, atol, rtol, noise_factor=0)
                allowed = worst[0]["allowed"] if worst else atol * float(abs(expected).max(initial=0))
                if best is None or figures.tolerance_used < best.used:
                    best = _Match(name, figures.tolerance_used, figures.max_abs_diff, allowed, array)
    return best


def _first_node(
    found: Divergence,
    path: str,
    graph: Any,
    provider: str,
    options: Mapping[str, str],
    feed: dict[str, Any],
    policy: TolerancePolicy,
    everything: list[str],
) -> None:
    """The first node (graph order of ``graph``, the model at ``path``) whose output on ``provider`` differs from
    ONNX Runtime's CPU provider's."""
    target = OrtRunner(path, provider, options, extra_outputs=everything, profile=provider != "cpu")
    mine = target.infer(feed)
    theirs = {**feed, **OrtRunner(path, "cpu", extra_outputs=everything).infer(feed)}
    for node in graph.graph.node:
        for value in node.output:
            a, b = mine.get(value), theirs.get(value)
            if a is None or b is None or a.shape != b.shape or a.dtype.kind != "f":
                continue
            atol, rtol = policy.for_output(value, b.dtype.name)
            figures, worst, _ = compare_values(value, b, a, atol, rtol, noise_factor=0)
            if figures.tolerance_used > 1:
                found.nodes, found.op_types = [node.name], [node.op_type]
                found.max_abs_diff = figures.max_abs_diff
                found.allowed = worst[0]["allowed"] if worst else 0.0
                found.placement = target.placement.by_node.get(node.name) or ", ".join(target.placement.providers)
                entering = [v for v in node.input if v in theirs]
                found.repro = (entering, [value], dict(theirs), {value: b})
                return
