"""An fp16 variant against the export it was built from, value by value: :class:`Fp16Scan` runs on every input set
the variant is checked on; a value that is Inf/NaN in float16 where the export's is finite is an overflow (past
65504) or the result of an underflow to zero, named at the first node. ONNX Runtime's CPU provider runs many float16
ops in float32 (so its outputs can hide the overflow); a GPU provider's float16 kernels would not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..runners.worker import open_runner

if TYPE_CHECKING:
    from ..export.exported import ExportedModel

#: The largest finite float16.
FP16_MAX = 65504.0
#: The smallest positive normal float16: below it values lose precision, then flush to zero.
FP16_TINY = 6.103515625e-05


class Pair:
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
        self.pair = Pair(exported, feed_names)

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
