"""Plain, JSON-serialisable records shared by the engine: what an input looks like, what to draw.

No framework, no numpy at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: Value patterns a recipe can ask for. Hypothesis shrinks towards the first one.
FLOAT_PATTERNS = ("normal", "uniform", "sparse_zeros", "positive", "negative", "constant", "zeros", "ones")
#: Magnitudes, shrinking towards 1.0.
SCALES = (1.0, 1e-3, 1e-1, 10.0, 1e3)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One model input as the generator sees it.

    ``kind`` is ``float``, ``int`` (drawn in ``[low, high)``), ``binary`` (an int 0/1 input such as an
    attention mask, 1 = keep) or ``bool`` (True = padding, torch's ``key_padding_mask`` convention).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    dynamic: Mapping[int, str]
    kind: str
    low: float | None = None
    high: float | None = None

    def shape_for(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(dims.get(self.dynamic[i], n) if i in self.dynamic else n for i, n in enumerate(self.shape))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A small, hashable description of one input set; numpy turns it into tensors.

    Hypothesis draws and shrinks recipes, never tensors element by element.
    """

    label: str
    dims: tuple[tuple[str, int], ...]
    pattern: str
    scale: float
    seed: int

    def dims_dict(self) -> dict[str, int]:
        return dict(self.dims)

    def describe(self) -> str:
        if self.pattern == "example":
            return "the example_inputs given to onnx_parity()"
        dims = ", ".join(f"{k}={v}" for k, v in self.dims) or "example shapes"
        return f"{self.label}: pattern={self.pattern}, scale={self.scale:g}, seed={self.seed}, dims=({dims})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "dims": dict(self.dims),
            "pattern": self.pattern,
            "scale": self.scale,
            "seed": self.seed,
        }


@dataclasses.dataclass
class OutputResult:
    """Parity figures of one output, over every input checked."""

    name: str
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    mismatched: int = 0
    total: int = 0
    atol: float = 0.0
    rtol: float = 0.0
    #: Largest ``|diff| / allowed`` seen: 1.0 is the edge of failing.
    tolerance_used: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
