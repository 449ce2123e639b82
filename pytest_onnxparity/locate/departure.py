"""Where a variant departs from the export it was built from.

- :class:`Fp16Scan`: every input set an fp16 variant is checked on, its float16 intermediate values against the
  export's: a value that is Inf/NaN in float16 where the export's is finite is an overflow (past 65504) or the
  result of an underflow to zero, named at the first node. ONNX Runtime's CPU provider runs many float16 ops in
  float32 (so its outputs can hide the overflow); a GPU provider's float16 kernels would not.
- :func:`departure`: the localization of a failing variant: both graphs run on the failing input with their
  intermediate values, and the first value of the export (graph order) the variant computes differently is
  named, with its module or layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..graph import scopes
from ..judge.compare import compare, compare_values
from .divergence import CLEAR, Divergence
from .fp16 import Pair, overflow

if TYPE_CHECKING:
    from ..adapters import ModuleValues
    from ..export.exported import ExportedModel
    from ..judge.tolerance import TolerancePolicy


def departure(
    exported: ExportedModel,
    feed: dict[str, Any],
    reference: dict[str, Any],
    policy: TolerancePolicy,
    context: Mapping[str, Any],
    records: list[ModuleValues],
) -> Divergence:
    """Where a failing variant departs from its export on the failing input (``feed`` keyed by graph input names).

    fp16: the first node whose float16 output is Inf or NaN where the export's is finite; int8: the first value
    whose cosine similarity falls below a tenth of the way from the variant's threshold to zero; else the first
    value past 10x its tolerance (failing that, the value that departs most).
    """
    import numpy as np

    assert exported.variant is not None
    found = Divergence(stage="variant")
    pair = Pair(exported, {})
    base = pair.base
    base_policy = dataclasses.replace(policy, variant=None, variant_metrics={}, precision_default=None)
    theirs, mine = pair.infer(feed)
    export_out = {o.name: theirs[o.name] for o in base.graph.output}
    on_reference = {r: context[r] for r in reference if r in context}
    if not compare(reference, export_out, base_policy, check_names=False, context=on_reference).passed:
        found.stage, found.stage_detail = "conversion", "the export the variant was built from differs here too"
        return found
    found.stage_detail = f"the {exported.variant} variant departs from the export it was built from"
    worst: tuple[float, Any, str, str] | None = None
    for node in base.graph.node:
        for value in node.output:
            a, b = theirs.get(value), mine.get(value)
            if a is None or b is None or a.shape != b.shape or a.dtype.kind != "f" or b.dtype.kind != "f":
                continue
            cause = overflow(value, a, b, list(node.input), theirs, mine, exported.variant == "fp16")
            badness, why = (float("inf"), cause) if cause else _departs(a, b, policy, value)
            if worst is None or badness > worst[0]:
                worst = (badness, node, value, why)
        if worst is not None and worst[0] > CLEAR:
            break
    if worst is None or worst[0] <= 1:
        found.notes.append("no intermediate value the two graphs share departs on this input")
        return found
    _, node, value, why = worst
    found.nodes, found.op_types = [node.name], [node.op_type]
    found.module = scopes.node_modules(base, [r.name for r in records]).get(node.name)
    found.module_type = {r.name: r.kind for r in records}.get(found.module or "")
    found.stage_detail += f"; {why}"
    with np.errstate(invalid="ignore"):  # Inf - Inf where both overflow
        diff = float(abs(theirs[value].astype("float64") - mine[value].astype("float64")).max())
    found.max_abs_diff = diff if diff < float("inf") else 0.0  # an overflow is said in words
    return found


def _departs(base: Any, mine: Any, policy: TolerancePolicy, value: str) -> tuple[float, str]:
    """(how far ``mine`` departs from ``base``, 10 and more is clear; why, in words)."""
    from ..judge import metrics

    limits = policy.limits(value, "float32")
    if limits:
        found, _ = metrics.measure(base, mine)
        floor = limits.get("cosine", 0.99)
        return (1 - found.get("cosine", 1.0)) / max(  # no signal in the export there: not a departure
            1 - floor, 1e-12
        ), f"value {value!r}: {metrics.text(found)} against the export's"
    atol, rtol = policy.for_output(value, "float32")
    figures, _, _ = compare_values(value, base, mine.astype(base.dtype), atol, rtol, noise_factor=0)
    return figures.tolerance_used, f"value {value!r} uses {figures.tolerance_used:.3g}x its tolerance"
