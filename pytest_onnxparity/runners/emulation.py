"""What a provider's reduced precision explains, measured on the input at hand.

The float32 rule measures the reference's own rounding error with a float64 run; a provider that computes in bf16,
f16 or TF32 is measured the same way: the same graph runs on ONNX Runtime's CPU provider with every float value
(inputs, weights, every node's outputs) rounded to that precision, and its distance from the float32 CPU run, element
by element, is how far that precision alone moves each output on this input. An ill-conditioned input (a small
difference of large terms) shows a large deviation there, a well-conditioned one a small one, so the provider is
allowed a factor of it (``tolerance.PROVIDER_NOISE_FACTOR``) instead of a flat share of the output's scale.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..graph.edits import SIGNIFICANT_BITS
from . import Deferred

if TYPE_CHECKING:
    import numpy as np

    from . import Runner

#: The precisions emulated: each rounds a float32 value to fewer significant bits.
EMULATED = tuple(SIGNIFICANT_BITS)


class Emulation:
    """The graph at ``path`` computed in ``precision`` on the CPU: ``deviation(feed, on_cpu)`` per output."""

    def __init__(self, path: str, precision: str, feed_names: Mapping[str, str]) -> None:
        self.precision = precision
        workdir = Path(tempfile.mkdtemp(prefix="onnxparity_emulated_"))
        weakref.finalize(self, shutil.rmtree, workdir, ignore_errors=True)

        def open_runner() -> Runner:
            from ..graph.edits import rounded
            from .onnxruntime import OrtRunner

            # Basic optimizations fold the weights' rounding into constants (not redone on every run) and fuse
            # nothing across a rounding; the tests check that every output still comes out rounded.
            edited = rounded(path, precision, workdir / f"{precision}.onnx")
            return OrtRunner(edited, "cpu", optimization="basic", feed_names=feed_names)

        self._runner = Deferred(f"onnxruntime-cpu-{precision}", open_runner)

    def describe(self) -> str:
        return (
            f"the graph run on ONNX Runtime's CPU provider with every float value (inputs, weights, each node's "
            f"outputs) rounded to {self.precision}"
        )

    def close(self) -> None:
        """Release the emulated graph's session (opened on first use)."""
        self._runner.close()

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The emulated graph's outputs on ``feed`` (its session opened on first use)."""
        return self._runner.infer(feed)

    def deviation(
        self, feed: Mapping[str, np.ndarray], on_cpu: Mapping[str, np.ndarray], seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Per float output of ``on_cpu`` (the float32 CPU run on ``feed``): how far the emulation lands from it, on
        ``feed`` and on ``feed`` nudged by one unit of the precision (random directions from ``seed``).

        One run's rounding errors can cancel by luck at an element where the device's do not; the nudged run is a
        second draw and shows how the input's own rounding to the precision moves each output (as the float32
        rule's 1-ulp perturbation does). A value the emulation makes non-finite (an f16 overflow) earns no
        allowance: where the provider overflows too, it fails, as it should."""
        import numpy as np

        out: dict[str, np.ndarray] = {}
        for emulated in (self.run(feed), self.run(self._nudged(feed, seed))):
            for (name, value), other in zip(on_cpu.items(), emulated.values()):
                if value.dtype.kind != "f" or other.shape != value.shape:
                    continue
                with np.errstate(invalid="ignore", over="ignore"):
                    gap = np.nan_to_num(np.abs(other.astype(np.float64) - value), nan=0.0, posinf=0.0)
                out[name] = np.fmax(out[name], gap) if name in out else gap
        return out

    def overflows(self, feed: Mapping[str, np.ndarray], on_cpu: Mapping[str, np.ndarray]) -> bool:
        """The emulation turns a finite output non-finite on ``feed``: the precision's range is exceeded."""
        import numpy as np

        emulated = self.run(feed).values()
        return any(
            bool((np.isfinite(value) & ~np.isfinite(other)).any())
            for value, other in zip(on_cpu.values(), emulated)
            if value.dtype.kind == "f" and other.shape == value.shape
        )

    def _nudged(self, feed: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        import numpy as np

        rng = np.random.default_rng([seed & 0xFFFFFFFF, 104729])
        unit = 2.0 ** (1 - SIGNIFICANT_BITS[self.precision])
        out = dict(feed)
        for name, value in feed.items():
            if value.dtype.kind == "f":
                step = unit * np.abs(value.astype(np.float64))
                out[name] = (value + np.where(rng.random(value.shape) < 0.5, -step, step)).astype(value.dtype)
        return out
