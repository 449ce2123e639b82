"""Input generation: hypothesis draws *recipes*, numpy materialises the tensors.

Where conversion bugs hide: other batch sizes with distinct rows, other lengths on dynamic axes,
tiny and large magnitudes of both signs, exact zeros, constants, integer ids over their whole range,
attention masks with padding. Fixed edge cases always run; generated ones add variety and shrink.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import OnnxParityUsageError
from .spec import FLOAT_PATTERNS, SCALES, Recipe, TensorSpec

if TYPE_CHECKING:
    import numpy as np
    from hypothesis.strategies import SearchStrategy

    from .settings import Settings

#: Exactly representable constants: a constant row keeps a zero variance in every runtime.
_CONSTANTS = (0.5, -1.0, 2.0, 1.0)


def resolve_dynamic_axes(
    example: Mapping[str, np.ndarray], settings: Settings, model_dynamic: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[int, str]]:
    """The dynamic axes of every input: the user's, else axis 0 as ``batch`` plus what the model declares."""
    if settings.dynamic_axes is not None:
        unknown = sorted(set(settings.dynamic_axes) - set(example))
        if unknown:
            raise OnnxParityUsageError(
                f"dynamic_axes names input(s) {unknown} that the model does not take; its inputs are {list(example)}."
            )
        axes = {name: dict(settings.dynamic_axes.get(name, {})) for name in example}
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
    settings: Settings,
    int_high_hints: Sequence[int] = (),
) -> list[TensorSpec]:
    """Describe each input: its kind and value range.

    Integer ranges: ``input_ranges``, else a 0/1 example is a mask, else the smallest embedding table
    that can hold the example's ids (``int_high_hints``), else the example's own min..max.
    """
    import numpy as np

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
        rng = settings.input_ranges.get(name)
        low: float | None
        high: float | None
        if arr.dtype == np.bool_:
            kind, low, high = "bool", None, None
        elif np.issubdtype(arr.dtype, np.integer):
            if rng is not None:
                kind, low, high = "int", int(rng[0]), int(rng[1])
            elif arr.size and set(np.unique(arr).tolist()) <= {0, 1} and arr.ndim >= 1:
                kind, low, high = "binary", 0, 2
            else:
                lo = int(arr.min()) if arr.size else 0
                hi = int(arr.max()) + 1 if arr.size else 1
                tables = [n for n in int_high_hints if n >= hi]
                if lo >= 0 and tables:
                    lo, hi = 0, min(tables)
                kind, low, high = "int", lo, hi
        elif np.issubdtype(arr.dtype, np.floating):
            kind = "float"
            low, high = (float(rng[0]), float(rng[1])) if rng is not None else (None, None)
        else:
            raise OnnxParityUsageError(
                f"input {name!r} has dtype {arr.dtype}; onnx_parity generates float, integer and bool inputs only."
            )
        specs.append(TensorSpec(name, arr.dtype.str, tuple(arr.shape), dyn, kind, low, high))
    return specs


def dim_sizes(specs: list[TensorSpec]) -> tuple[dict[str, int], set[str]]:
    """Example size of every dynamic dimension, and which of them are batch (axis 0) dimensions."""
    sizes: dict[str, int] = {}
    batch: set[str] = set()
    for spec in specs:
        for axis, dim in spec.dynamic.items():
            sizes[dim] = spec.shape[axis]
            if axis == 0:
                batch.add(dim)
    return sizes, batch


def _other_range(example_size: int) -> tuple[int, int]:
    return 1, max(2, 2 * example_size)


def edge_recipes(specs: list[TensorSpec], settings: Settings) -> list[Recipe]:
    """The fixed cases that always run, before anything generated."""
    sizes, batch = dim_sizes(specs)
    largest = max(settings.batch_sizes)

    def dims(batch_size: int | None = None, other: str = "example") -> tuple[tuple[str, int], ...]:
        out = []
        for dim, n in sizes.items():
            if dim in batch and batch_size is not None:
                out.append((dim, batch_size))
            elif dim not in batch and other == "short":
                out.append((dim, max(1, n // 2)))
            elif dim not in batch and other == "long":
                out.append((dim, n + n // 2 + 1))
            else:
                out.append((dim, n))
        return tuple(out)

    recipes = [Recipe("example", dims(), "example", 1.0, 0)]
    if batch:
        for b in settings.batch_sizes:
            recipes.append(Recipe(f"edge: batch {b}, distinct rows", dims(b), "normal", 1.0, 1000 + b))
    else:  # nothing batch-dynamic (dynamic_axes={}): the example's shapes only
        recipes.append(Recipe("edge: random normal", dims(), "normal", 1.0, 1000))
    recipes += [
        Recipe("edge: exact zeros", dims(largest), "zeros", 1.0, 1),
        Recipe("edge: ones", dims(largest), "ones", 1.0, 2),
        Recipe("edge: constant rows", dims(largest), "constant", 1.0, 3),
        Recipe("edge: sparse exact zeros", dims(largest), "sparse_zeros", 1.0, 4),
        Recipe("edge: large magnitude (x1e3)", dims(largest), "normal", 1e3, 5),
        Recipe("edge: tiny magnitude (x1e-3)", dims(largest), "normal", 1e-3, 6),
        Recipe("edge: uniform, both signs (x10)", dims(largest), "uniform", 10.0, 7),
    ]
    if any(dim not in batch for dim in sizes):
        recipes.append(Recipe("edge: shorter dynamic axes", dims(min(2, largest), "short"), "normal", 1.0, 8))
        recipes.append(Recipe("edge: longer dynamic axes", dims(min(2, largest), "long"), "normal", 1.0, 9))
    return recipes


def recipe_strategy(specs: list[TensorSpec], settings: Settings) -> SearchStrategy[Recipe]:
    """A hypothesis strategy over recipes; everything shrinks towards small, plain inputs."""
    from hypothesis import strategies as st

    sizes, batch = dim_sizes(specs)
    dim_strategies = []
    for dim, n in sizes.items():
        values = st.sampled_from(settings.batch_sizes) if dim in batch else st.integers(*_other_range(n))
        dim_strategies.append(st.tuples(st.just(dim), values))
    return st.builds(
        Recipe,
        label=st.just("generated"),
        dims=st.tuples(*dim_strategies),
        pattern=st.sampled_from(FLOAT_PATTERNS),
        scale=st.sampled_from(SCALES),
        seed=st.integers(0, 2**31 - 1),
    )


def materialize(recipe: Recipe, specs: list[TensorSpec], example: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Build the numpy inputs a recipe describes; the same recipe always gives the same arrays."""
    import numpy as np

    if recipe.pattern == "example":
        return {name: np.array(arr, copy=True) for name, arr in example.items()}
    dims = recipe.dims_dict()
    out = {}
    for index, spec in enumerate(specs):
        rng = np.random.default_rng([recipe.seed, index])
        shape = spec.shape_for(dims)
        dtype = np.dtype(spec.dtype)
        if spec.kind == "float":
            arr = _float_values(rng, recipe, shape).astype(dtype)
            if spec.low is not None and spec.high is not None:
                arr = np.clip(arr, spec.low, spec.high).astype(dtype)
        elif spec.kind == "int":
            arr = _int_values(rng, recipe.pattern, shape, int(spec.low or 0), int(spec.high or 1)).astype(dtype)
        else:
            keep = _mask_values(rng, recipe.pattern, shape)
            arr = (~keep if spec.kind == "bool" else keep).astype(dtype)
        out[spec.name] = arr
    return out


def _float_values(rng: Any, recipe: Recipe, shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    pattern, scale = recipe.pattern, recipe.scale
    if pattern == "zeros":
        return np.zeros(shape)
    if pattern == "ones":
        return np.ones(shape)
    if pattern == "constant":
        return np.full(shape, _CONSTANTS[recipe.seed % len(_CONSTANTS)])
    if pattern == "uniform":
        return rng.uniform(-scale, scale, size=shape)
    values = rng.standard_normal(shape) * scale
    if pattern == "positive":
        return np.abs(values)
    if pattern == "negative":
        return -np.abs(values)
    if pattern == "sparse_zeros":
        values[rng.random(shape) < 0.5] = 0.0
    return values


def _int_values(rng: Any, pattern: str, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
    import numpy as np

    if pattern in ("zeros", "constant"):
        return np.full(shape, low)
    if pattern == "ones":
        return np.full(shape, high - 1)
    values = rng.integers(low, high, size=shape)
    if values.size >= 2:
        # The range's ends are where out-of-range bugs (a clamp, a too-small table) show.
        flat = values.reshape(-1)
        flat[0], flat[-1] = low, high - 1
    return values


def _mask_values(rng: Any, pattern: str, shape: tuple[int, ...]) -> np.ndarray:
    """Which positions are kept (True); every row along the last axis keeps at least one position."""
    import numpy as np

    if not shape or pattern == "ones":
        return np.ones(shape, dtype=bool)
    length = shape[-1]
    if pattern in ("sparse_zeros", "positive", "negative"):
        keep = rng.random(shape) < 0.5
        first = rng.integers(0, length, size=shape[:-1])
        np.put_along_axis(keep, first[..., None], True, axis=-1)
        return keep
    # Right padding, a random number of real tokens per row: what a tokenizer produces.
    kept = rng.integers(1, length + 1, size=shape[:-1])
    return np.arange(length) < kept[..., None]
