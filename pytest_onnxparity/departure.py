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

from . import scopes
from .compare import compare, compare_values
from .runners.worker import open_runner

if TYPE_CHECKING:
    from .export import ExportedModel
    from .localize import Divergence
    from .tolerance import TolerancePolicy

#: The largest finite float16.
FP16_MAX = 65504.0
#: The smallest positive normal float16: below it values lose precision, then flush to zero.
FP16_TINY = 6.103515625e-05


class _Pair:
    """A variant and the export it was built from, both on the CPU provider with optimizations off, returning the
    intermediate values both graphs compute; ``base`` is the export's graph (its node order is the walk's)."""

    def __init__(self, exported: ExportedModel, feed_names: Mapping[str, str]) -> None:
        import onnx

        assert exported.base_path is not None
        self.base = onnx.load(exported.base_path, load_external_data=False)
        made = {v for node in onnx.load(exported.path, load_external_data=False).graph.node for v in node.output}
        shared = [v for node in self.base.graph.node for v in node.output if v and v in made]
        self._theirs, self._mine = (
            open_runner(path, "cpu", optimization="disabled", feed_names=feed_names, extra_outputs=shared)
            for path in (exported.base_path, exported.path)
        )

    def infer(self, feed: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the export's values, the variant's values) on ``feed``."""
        return self._theirs.infer(feed), self._mine.infer(feed)

    def close(self) -> None:
        self._theirs.close()
        self._mine.close()


class Fp16Scan:
    """The fp16 variant's intermediate values on one input set against the export's (both on the CPU provider)."""

    def __init__(self, exported: ExportedModel, feed_names: Mapping[str, str]) -> None:
        self.pair = _Pair(exported, feed_names)

    @staticmethod
    def applies(exported: ExportedModel) -> bool:
        """An fp16 variant the plugin built (a user's own fp16 file has no export beside it to hold it against)."""
        return exported.variant == "fp16" and exported.base_path is not None

    def __call__(self, feed: Mapping[str, Any]) -> str | None:
        """None, or which node's float16 output is Inf/NaN where the export's is finite, and why."""
        theirs, mine = self.pair.infer(feed)
        for node in self.pair.base.graph.node:
            for value in node.output:
                cause = overflow(value, theirs.get(value), mine.get(value), list(node.input), theirs, mine)
                if cause is not None:
                    return f"fp16 overflow at node {node.name!r} ({node.op_type}): {cause}"
        return None

    def close(self) -> None:
        self.pair.close()


def overflow(
    value: str,
    base: Any,
    mine: Any,
    inputs: list[str],
    theirs: Mapping[str, Any],
    ours: Mapping[str, Any],
    fp16: bool = True,
) -> str | None:
    """Why ``value`` is Inf/NaN in the variant (float16 when ``fp16``) where the export's is finite (None if it is
    not)."""
    import numpy as np

    if base is None or mine is None or base.shape != mine.shape or base.dtype.kind != "f":
        return None
    broken = np.isfinite(base) & ~np.isfinite(mine.astype(np.float64))
    if not broken.any():
        return None
    peak = float(np.abs(base[np.isfinite(base)]).max(initial=0.0))
    where = f"its output {value!r} is Inf/NaN at {int(broken.sum())} position(s) where the float32 export's is finite"
    if not fp16:  # int8: a quantize/dequantize pair whose scale or zero point is not finite, typically
        return (
            f"{where} (in a quantized graph: a scale or zero point that is not finite, as when calibration saw an "
            "infinite value such as a -inf attention mask)"
        )
    if peak > FP16_MAX:
        return f"{where}; its float32 values reach {peak:.4g}, past float16's largest finite value {FP16_MAX:g}"
    for name in inputs:
        a, b = theirs.get(name), ours.get(name)
        if a is not None and b is not None and a.shape == b.shape and a.dtype.kind == "f":
            flushed = (a != 0) & (b == 0)
            if flushed.any():
                return (
                    f"{where}; its input {name!r} underflowed to zero in float16 at {int(flushed.sum())} position(s) "
                    f"(float32 values down to {float(np.abs(a[flushed]).min()):.3g}, float16's smallest normal is "
                    f"{FP16_TINY:.3g})"
                )
    return f"{where} (an input past float16's range)"


def departure(
    exported: ExportedModel,
    feed: dict[str, Any],
    reference: dict[str, Any],
    policy: TolerancePolicy,
    context: Mapping[str, Any],
    records: list[tuple[str, str, list[Any]]],
) -> Divergence:
    """Where a failing variant departs from its export on the failing input (``feed`` keyed by graph input names).

    fp16: the first node whose float16 output is Inf or NaN where the export's is finite; int8: the first value
    whose cosine similarity falls below a tenth of the way from the variant's threshold to zero; else the first
    value past 10x its tolerance (failing that, the value that departs most).
    """
    import numpy as np

    from .localize import CLEAR, Divergence

    assert exported.variant is not None
    found = Divergence(stage="variant")
    pair = _Pair(exported, {})
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
    found.module = scopes.node_modules(base, [name for name, _, _ in records]).get(node.name)
    found.module_type = {name: kind for name, kind, _ in records}.get(found.module or "")
    found.stage_detail += f"; {why}"
    with np.errstate(invalid="ignore"):  # Inf - Inf where both overflow
        diff = float(abs(theirs[value].astype("float64") - mine[value].astype("float64")).max())
    found.max_abs_diff = diff if diff < float("inf") else 0.0  # an overflow is said in words
    return found


def _departs(base: Any, mine: Any, policy: TolerancePolicy, value: str) -> tuple[float, str]:
    """(how far ``mine`` departs from ``base``, 10 and more is clear; why, in words)."""
    from . import metrics

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
