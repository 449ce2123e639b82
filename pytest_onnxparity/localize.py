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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import scopes
from .compare import compare, compare_values
from .runners.onnxruntime import OrtRunner

if TYPE_CHECKING:
    from .adapters import PreparedModel
    from .compare import FailingCase
    from .export import ExportedModel
    from .probe import Probe
    from .report import Failure
    from .settings import CheckOptions
    from .tolerance import TolerancePolicy

#: The failures worth localizing: a failing input that runs on both sides.
LOCALIZED = ("values", "nonfinite", "shape", "metrics")
#: A module "diverges" when its output uses this many times its tolerance (rounding alone stays far below);
#: failing that, the first one past its tolerance at all.
CLEAR = 10.0
LEVELS = ("basic", "extended", "all")


@dataclasses.dataclass
class Divergence:
    stage: str = "unknown"
    stage_detail: str = ""
    module: str | None = None
    module_type: str | None = None
    nodes: list[str] = dataclasses.field(default_factory=list)
    op_types: list[str] = dataclasses.field(default_factory=list)
    max_abs_diff: float = 0.0
    allowed: float = 0.0
    #: For a provider: which provider ran the first divergent node.
    placement: str = ""
    #: How the error grows after the first divergence: "module: max abs diff".
    after: list[str] = dataclasses.field(default_factory=list)
    #: An artifact against a fresh export, the divergent path first.
    differences: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    #: For the repro subgraph: (its input values, its output values, every value of the ONNX run, expected).
    repro: tuple[list[str], list[str], dict[str, Any], dict[str, Any]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def line(self) -> str:
        """``first divergence: module 'blocks.3.act' (LeakyReLU) -> ONNX node '...' (LeakyRelu): ...; conversion``."""
        nodes = ", ".join(f"{n!r} ({o})" for n, o in zip(self.nodes[:3], self.op_types[:3]))
        word = "layer" if (self.module_type or "").startswith(("keras", "tf_keras")) else "module"
        where = (
            f"{word} {self.module!r} ({self.module_type}) -> ONNX node {nodes}"
            if self.module
            else (f"ONNX node {nodes}" if nodes else "no module or node could be singled out")
        )
        text = f"first divergence: {where}"
        if self.max_abs_diff:
            text += f": max abs diff {self.max_abs_diff:.3g}{f' (allowed {self.allowed:.3g})' if self.allowed else ''}"
        text += f"; {self.stage}" + (f" ({self.stage_detail})" if self.stage_detail else "")
        return text + (f"; {self.differences[0]}" if self.differences else "")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("repro")
        out["line"] = self.line()
        return out


def for_failure(
    probe: Probe,
    prepared: PreparedModel,
    exported: ExportedModel,
    check: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    failure: Failure | None,
) -> Divergence | None:
    """Localize a failure that has a failing input to rerun (values, NaN placement, shape, provider), unless
    ``localize=False``."""
    case = probe.case_for(failure)
    if failure is None or case is None or not check.localize or failure.kind not in LOCALIZED:
        return None
    # A conversion failure was found on ONNX Runtime's CPU provider, whatever the item's provider.
    provider = getattr(probe.target, "provider", "cpu") if failure.verdict == "provider" else "cpu"
    policy = probe.policy_of(failure)
    names = getattr(probe.target, "feed_names", {})
    graph_feed = {g: case.feed[k] for g, k in names.items()} if names else dict(case.feed)
    with probe.timings.phase("localize"):
        try:
            if exported.variant is not None and exported.base_path is not None:
                from .departure import departure

                intermediates = getattr(prepared, "intermediates", None)
                records = intermediates(case.feed) if intermediates is not None else []
                return departure(exported, graph_feed, case.reference or {}, policy, case.context, records)
            return localize(prepared, exported, provider, check, axes, case, graph_feed, policy)
        except Exception as exc:  # localizing must never replace the failure it explains
            return Divergence(notes=[f"localization failed: {type(exc).__name__}: {exc}"[:500]])


def localize(
    prepared: PreparedModel,
    exported: ExportedModel,
    provider: str,
    check: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    case: FailingCase,
    feed: dict[str, Any],
    policy: TolerancePolicy,
) -> Divergence:
    """Rerun the failing input to name the stage, the first divergent module/node and (artifacts) what differs.

    ``feed`` is the failing input keyed by the graph's input names (``case.feed`` by the model's).
    """
    import onnx

    started = time.monotonic()
    deadline = started + check.localize_budget
    options = check.provider_options.get(provider, {})
    found = Divergence()
    graph = onnx.load(exported.path, load_external_data=False)
    reference, workdir = case.reference or {}, Path(exported.path).parent
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
        intermediates = getattr(prepared, "intermediates", None)
        records: list[tuple[str, str, list[Any]]] = intermediates(case.feed) if intermediates is not None else []
        _walk(found, graph, records, values, policy)
        if found.module is None:
            found.notes.append("no module or layer of the model maps to the graph's nodes (exporter scope names)")
    elif level:
        found.notes.append(
            f"save the graph as optimized at level '{level}' (SessionOptions.optimized_model_filepath)"
            " and compare it with the unoptimized one to see the rewrite"
        )
    if exported.origin == "user file" and time.monotonic() < deadline:
        fresh = workdir / "fresh_export"
        fresh.mkdir(parents=True, exist_ok=True)
        try:
            result = prepared.export(fresh / "model.onnx", axes, dataclasses.replace(check, onnx_model=None))
            fresh_model = onnx.load(result.path or str(fresh / "model.onnx"))
            found.differences = scopes.structural_diff(onnx.load(exported.path), fresh_model, found.nodes)[:8]
        except Exception as exc:  # the model cannot be exported here: the structural comparison is skipped
            found.notes.append(f"no fresh export to compare the artifact with: {type(exc).__name__}: {exc}"[:300])
    if time.monotonic() > deadline:
        found.notes.append(
            f"localization stopped at its time budget ({check.localize_budget:g} s, option localize_budget)"
        )
    found.seconds = round(time.monotonic() - started, 3)
    return found


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


def _walk(
    found: Divergence,
    graph: Any,
    records: list[tuple[str, str, list[Any]]],
    values: Mapping[str, Any],
    policy: TolerancePolicy,
) -> None:
    """The first module whose output diverges, and how the error grows after it."""
    scope = scopes.node_modules(graph, [name for name, _, _ in records])
    outputs = scopes.module_outputs(graph, scope)
    made_by = scopes.producers(graph)
    walked = []
    for module, kind, arrays in records:
        best = _best_match(arrays, [v for v in outputs.get(module, []) if v in values], values, policy)
        if best is not None:
            walked.append((module, kind, *best))
    first = next((w for w in walked if w[3] > CLEAR), None) or next((w for w in walked if w[3] > 1), None)
    if first is None:
        return
    module, kind, value, _, diff, allowed, array = first
    node = made_by.get(value)
    found.module, found.module_type = module, kind
    found.nodes = [node.name] if node is not None else [value]
    found.op_types = [node.op_type] if node is not None else ["?"]
    found.max_abs_diff, found.allowed = diff, allowed
    later = walked[walked.index(first) + 1 :]
    found.after = [f"{m}: max abs diff {d:.3g}" for m, _, _, u, d, _, _ in later if u > 1][-3:]
    members = [n for n in graph.graph.node if scope.get(n.name, "").startswith(module)]
    produced = {v for n in members for v in n.output}
    entering = list(dict.fromkeys(v for n in members for v in n.input if v and v not in produced and v in values))
    found.repro = (entering, [value], dict(values), {value: array})


def _best_match(
    arrays: list[Any], candidates: list[str], values: Mapping[str, Any], policy: TolerancePolicy
) -> tuple[str, float, float, float, Any] | None:
    """Of the graph values with an output's shape, the closest: (value, share of tolerance, diff, allowed, the
    module's output it was held against)."""
    best = None
    for array in arrays:
        for name in candidates:
            got = values[name]
            if getattr(got, "shape", None) != array.shape or got.dtype.kind != array.dtype.kind:
                continue
            atol, rtol = policy.for_output(name, array.dtype.name)
            figures, worst, _ = compare_values(name, array, got.astype(array.dtype), atol, rtol, noise_factor=0)
            allowed = worst[0]["allowed"] if worst else atol * float(abs(array).max(initial=0))
            if best is None or figures.tolerance_used < best[1]:
                best = (name, figures.tolerance_used, figures.max_abs_diff, allowed, array)
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
