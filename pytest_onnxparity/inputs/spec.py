"""What each model input looks like to the generator (kind, range, dynamic axes), and a recipe to draw one set.

Plain records plus the functions that derive them from the example; numpy only inside functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityUsageError

if TYPE_CHECKING:
    import numpy as np

    from ..options.settings import CheckOptions

#: Value patterns a recipe can ask for. Hypothesis shrinks towards the first one.
FLOAT_PATTERNS = ("normal", "uniform", "sparse_zeros", "positive", "negative", "constant", "zeros", "ones")
#: Normal values with the example's own mean and standard deviation (an int8 variant's inputs and calibration).
LIKE_EXAMPLE = "like_example"
#: Magnitudes, shrinking towards 1.0.
SCALES = (1.0, 1e-3, 1e-1, 10.0, 1e3)


def np_dtype(name: str) -> np.dtype[Any]:
    """numpy dtype by name; ``bfloat16`` comes from ml_dtypes (numpy has none)."""
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


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

    @property
    def is_mask(self) -> bool:
        return self.kind in ("binary", "bool")


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        return cls(data["label"], tuple(data["dims"].items()), data["pattern"], data["scale"], data["seed"])


def resolve_dynamic_axes(
    example: Mapping[str, np.ndarray], options: CheckOptions, model_dynamic: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[int, str]]:
    """The dynamic axes of every input: the user's, else axis 0 as ``batch`` plus what the model declares."""
    if options.dynamic_axes is not None:
        unknown = sorted(set(options.dynamic_axes) - set(example))
        if unknown:
            raise OnnxParityUsageError(
                f"dynamic_axes names input(s) {unknown} that the model does not take; its inputs are {list(example)}."
            )
        axes = {name: dict(options.dynamic_axes.get(name, {})) for name in example}
    else:
        axes = {name: ({0: "batch"} if arr.ndim else {}) for name, arr in example.items()}
        for name, extra in model_dynamic.items():
            axes.setdefault(name, {}).update({a: d for a, d in extra.items() if a != 0})
    for name, per_input in axes.items():
        ndim = example[name].ndim
        bad = [a for a in per_input if a >= ndim]
        if bad:
            raise OnnxParityUsageError(
                f"dynamic_axes for input {name!r} names axis {bad[0]}, but that input has {ndim} dimension(s)."
            )
    return axes


def build_specs(
    example: Mapping[str, np.ndarray],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    options: CheckOptions,
    int_high_hints: Sequence[int] = (),
) -> list[TensorSpec]:
    """Describe each input: its kind and value range.

    Integer ranges: ``input_ranges``, else a 0/1 example is a mask, else the smallest embedding table
    that can hold the example's ids (``int_high_hints``), else the example's own min..max.
    """
    import numpy as np

    unknown = sorted(set(options.input_ranges) - set(example))
    if unknown:
        raise OnnxParityUsageError(
            f"input_ranges names input(s) {unknown} that the model does not take; its inputs are {list(example)}."
        )
    specs = []
    sizes: dict[str, tuple[int, str]] = {}
    for name, arr in example.items():
        dyn = dict(dynamic_axes.get(name, {}))
        for axis, dim in dyn.items():
            seen = sizes.setdefault(dim, (arr.shape[axis], name))
            if seen[0] != arr.shape[axis]:
                raise OnnxParityUsageError(
                    f"dynamic dimension {dim!r} is {seen[0]} in input {seen[1]!r} but {arr.shape[axis]} in {name!r}; "
                    "give the example inputs equal sizes there, or name the axes differently in dynamic_axes."
                )
        rng = options.input_ranges.get(name)
        low: float | None = None
        high: float | None = None
        if arr.dtype == np.bool_:
            kind = "bool"
        elif np.issubdtype(arr.dtype, np.integer):
            kind, low, high = "int", *_int_range(arr, rng, int_high_hints)
            if rng is None and arr.size and arr.ndim >= 1 and set(np.unique(arr).tolist()) <= {0, 1}:
                kind, low, high = "binary", 0, 2
        elif np.issubdtype(arr.dtype, np.floating) or arr.dtype.name == "bfloat16":
            kind = "float"
            low, high = (float(rng[0]), float(rng[1])) if rng is not None else (None, None)
        else:
            raise OnnxParityUsageError(
                f"input {name!r} has dtype {arr.dtype}; onnx_parity generates float, integer and bool inputs only."
            )
        specs.append(TensorSpec(name, arr.dtype.name, tuple(arr.shape), dyn, kind, low, high))
    return specs


def _int_range(arr: np.ndarray, rng: tuple[float, float] | None, hints: Sequence[int]) -> tuple[int, int]:
    if rng is not None:
        return int(rng[0]), int(rng[1])
    low = int(arr.min()) if arr.size else 0
    high = int(arr.max()) + 1 if arr.size else 1
    tables = [n for n in hints if n >= high]
    return (0, min(tables)) if low >= 0 and tables else (low, high)


def feed_digest(
    example: Mapping[str, np.ndarray], specs: list[TensorSpec], mask_holes: bool, special_ids: Mapping[str, int]
) -> str:
    """What, besides a recipe, decides the inputs ``inputs.materialize`` builds from it: the example's values (the
    example recipe is the example; int8's recipes follow its spread), the specs (ranges, kinds), the mask style and
    the token ids placed. Two checks of one model share memoized outputs only where this agrees."""
    import hashlib

    digest = hashlib.sha256(repr((specs, mask_holes, sorted(special_ids.items()))).encode())
    for name, array in example.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
