"""Where conversion bugs hide, as recipes: hypothesis draws them, numpy materialises the tensors.

Fixed edge cases always run first: the example; every batch size with distinct rows (a wide one
included); exact zeros, ones, constant rows, sparse zeros, tiny and large magnitudes of both signs;
and every other dynamic axis walked geometrically up to the model's own limit. Generated recipes
then add variety and shrink when they fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .spec import FLOAT_PATTERNS, SCALES, Recipe, TensorSpec, np_dtype

if TYPE_CHECKING:
    import numpy as np
    from hypothesis.strategies import SearchStrategy

    from ..options.settings import CheckOptions

#: Exactly representable constants: a constant row keeps a zero variance in every runtime.
_CONSTANTS = (0.5, -1.0, 2.0, 1.0)
#: Batch size of the recipes that walk another axis (long sequences cost enough at batch 2).
WALK_BATCH = 2
#: The float pattern with NaN, +Inf and -Inf at some positions of some rows (the other rows stay finite).
NONFINITE = "nonfinite"
NONFINITE_LABEL = "non-finite values (NaN, +Inf, -Inf in some rows)"
#: Edge patterns at the widest batch: (edge case name, label, pattern, scale, seed).
PATTERN_EDGES = (
    ("zeros", "exact zeros", "zeros", 1.0, 1),
    ("ones", "ones", "ones", 1.0, 2),
    ("constant", "constant rows", "constant", 1.0, 3),
    ("sparse_zeros", "sparse exact zeros", "sparse_zeros", 1.0, 4),
    ("large", "large magnitude (x1e3)", "normal", 1e3, 5),
    ("tiny", "tiny magnitude (x1e-3)", "normal", 1e-3, 6),
    ("uniform", "uniform, both signs (x10)", "uniform", 10.0, 7),
    ("nonfinite", NONFINITE_LABEL, NONFINITE, 1.0, 8),
)


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


def example_recipe(specs: list[TensorSpec]) -> Recipe:
    """The example itself, as a recipe: the first edge case."""
    sizes, _ = dim_sizes(specs)
    return Recipe("example", tuple(sizes.items()), "example", 1.0, 0)


def edge_recipes(specs: list[TensorSpec], options: CheckOptions, plan: Mapping[str, tuple[int, ...]]) -> list[Recipe]:
    """The fixed cases that always run, before anything generated, cheapest first."""
    sizes, batch = dim_sizes(specs)
    widest = {dim: max(plan[dim]) for dim in batch}

    def dims(**override: int) -> tuple[tuple[str, int], ...]:
        return tuple((dim, override.get(dim, n)) for dim, n in sizes.items())

    recipes = [example_recipe(specs)]
    on = options.edge_cases
    plain = options.input_patterns[0] if options.input_patterns else "normal"
    if not batch:  # nothing batch-dynamic (dynamic_axes={}): the example's shapes only
        recipes.append(Recipe("edge: random normal", dims(), plain, 1.0, 1000))
    elif "batches" in on:
        for b in sorted({b for dim in batch for b in plan[dim]}):
            recipes.append(
                Recipe(f"edge: batch {b}, distinct rows", dims(**dict.fromkeys(batch, b)), plain, 1.0, 1000 + b)
            )
    if batch and "empty_batch" in on:
        recipes.append(Recipe("edge: empty batch", dims(**dict.fromkeys(batch, 0)), "normal", 1.0, 999))
    floats = any(s.kind == "float" for s in specs)
    for name, label, pattern, scale, seed in PATTERN_EDGES:
        if name in on and (floats or pattern != NONFINITE):  # NaN/Inf only in float inputs
            recipes.append(Recipe(f"edge: {label}", dims(**widest), pattern, scale, seed))
    if "lengths" in on:
        walk_batch = {dim: min(WALK_BATCH, max(plan[dim])) for dim in batch}
        for dim in sizes:
            for size in [] if dim in batch else plan[dim]:
                if size != sizes[dim]:
                    recipes.append(
                        Recipe(f"edge: {dim}={size}", dims(**walk_batch, **{dim: size}), plain, 1.0, 10 + size)
                    )
    return recipes


def is_walk(recipe: Recipe) -> bool:
    """An edge case that walks one non-batch axis (``edge: seq=67``)."""
    return recipe.label.startswith("edge: ") and "=" in recipe.label


def recipe_strategy(
    specs: list[TensorSpec], options: CheckOptions, plan: Mapping[str, tuple[int, ...]]
) -> SearchStrategy[Recipe]:
    """A hypothesis strategy over recipes; everything shrinks towards small, plain inputs."""
    from hypothesis import strategies as st

    sizes, batch = dim_sizes(specs)
    dim_strategies = []
    for dim, n in sizes.items():
        near = st.integers(1, min(max(plan[dim]), max(2, 2 * n)))
        values = st.sampled_from(plan[dim]) if dim in batch or dim in options.axis_sizes else near
        dim_strategies.append(st.tuples(st.just(dim), values))
    return st.builds(
        Recipe,
        label=st.just("generated"),
        dims=st.tuples(*dim_strategies),
        pattern=st.sampled_from(options.input_patterns or FLOAT_PATTERNS),
        scale=st.sampled_from(options.input_scales or SCALES),
        seed=st.integers(0, 2**31 - 1),
    )


def elements(recipe: Recipe, specs: list[TensorSpec]) -> int:
    """How many elements the recipe's input set holds (checked against the memory budget before building)."""
    import math

    dims = recipe.dims_dict()
    return sum(math.prod(spec.shape_for(dims)) for spec in specs)


def materialize(
    recipe: Recipe,
    specs: list[TensorSpec],
    example: Mapping[str, np.ndarray],
    mask_holes: bool = True,
    special: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Build the numpy inputs a recipe describes; the same recipe always gives the same arrays.

    ``special``: the model's ``pad`` / ``bos`` / ``eos`` token ids, placed as a tokenizer places them.
    """
    import numpy as np

    if recipe.pattern == "example":
        return {name: np.array(arr, copy=True) for name, arr in example.items()}
    dims = recipe.dims_dict()
    out = {}
    for index, spec in enumerate(specs):
        rng = np.random.default_rng([recipe.seed & 0xFFFFFFFF, index])
        shape = spec.shape_for(dims)
        dtype = np_dtype(spec.dtype)
        if spec.kind == "float":
            values = np.asarray(_float_values(rng, recipe, shape), dtype=np.float64)
            if recipe.pattern == "like_example":  # the example's own mean and spread (what int8 was calibrated on)
                seen = np.asarray(example[spec.name], dtype=np.float64)
                values = seen.mean() + values * (float(seen.std()) or 1.0)
            if spec.low is not None and spec.high is not None:  # a declared range holds no NaN or Inf
                values = np.clip(np.nan_to_num(values, nan=spec.low), spec.low, spec.high)
            arr = values.astype(dtype)
        elif spec.kind == "int":
            arr = _int_values(rng, recipe.pattern, shape, int(spec.low or 0), int(spec.high or 1)).astype(dtype)
        else:
            keep = mask_values(rng, recipe.pattern, shape, mask_holes)
            arr = (~keep if spec.kind == "bool" else keep).astype(dtype)
        out[spec.name] = arr
    _token_ids(out, specs, special or {}, recipe.pattern)
    return out


def _token_ids(out: dict[str, np.ndarray], specs: list[TensorSpec], special: Mapping[str, int], pattern: str) -> None:
    """Token ids as a tokenizer writes them: the model's pad id (else the range's low end) at positions a mask
    marks as padding, its ``bos`` / ``eos`` ids first and last among each row's real tokens. (Random ids there
    are read by models that pool at a token: CLIP's end-of-text, a classification token.) The range's own ends
    move to real tokens."""
    import numpy as np

    masks = [s for s in specs if s.is_mask and len(s.shape) == 2]
    for ids in (s for s in specs if s.kind == "int" and len(s.shape) >= 2):
        values = out[ids.name]
        low, high = int(ids.low or 0), int(ids.high or 1)
        padded = np.zeros(values.shape[:2], bool)
        for mask in masks:
            same_axes = [ids.dynamic.get(a) for a in (0, 1)] == [mask.dynamic.get(a) for a in (0, 1)]
            if same_axes and values.shape[:2] == out[mask.name].shape:
                padded = out[mask.name].astype(bool) if mask.kind == "bool" else out[mask.name] == 0
                break
        if not padded.any() and not special.keys() & {"bos", "eos"}:
            continue
        pad = special.get("pad", low)
        values[padded] = pad if low <= pad < high else low  # a pad id outside this input's range: its low end
        tokens = values.reshape(*values.shape[:2], -1)
        free = ~padded
        for row in range(values.shape[0]):
            real = np.flatnonzero(~padded[row])
            for position, name in ((0, "bos"), (-1, "eos")):
                if real.size and low <= special.get(name, -1) < high:
                    tokens[row, real[position]] = special[name]
                    free[row, real[position]] = False
        spots = np.flatnonzero(free)
        if spots.size and pattern not in ("zeros", "constant", "ones"):
            flat = tokens.reshape(-1, tokens.shape[-1])
            flat[spots[0]], flat[spots[-1]] = low, high - 1


def _float_values(rng: Any, recipe: Recipe, shape: tuple[int, ...]) -> Any:
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
    values = np.asarray(rng.standard_normal(shape) * scale)
    if pattern == NONFINITE and values.size:
        # Rows hold a NaN, +Inf or -Inf at one random position in turn, every fourth row stays finite: a value
        # leaking from one row into another shows as well as a NaN dropped within a row.
        rows = values.reshape(shape[0] if shape else 1, -1)
        for row in range(len(rows)):
            if row % 4 < 3 and rows.shape[1]:
                rows[row, rng.integers(0, rows.shape[1])] = (np.nan, np.inf, -np.inf)[row % 4]
        return values
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
    values = np.asarray(rng.integers(low, high, size=shape))
    if values.size >= 2:
        # The range's ends are where out-of-range bugs (a clamp, a too-small table) show.
        flat = values.reshape(-1)
        flat[0], flat[-1] = low, high - 1
    return values


def mask_values(rng: Any, pattern: str, shape: tuple[int, ...], holes: bool = False) -> np.ndarray:
    """Which positions are kept (True), as a tokenizer pads: right or left padding, at least one real token
    per row. With ``holes`` (the default of ``mask_holes``), patterns that scatter kept positions give masks with
    holes: positions left out of the comparison as padded ones are, so a causal model sees them without alarm."""
    import numpy as np

    if not shape or pattern == "ones":
        return np.ones(shape, dtype=bool)
    length = shape[-1]
    if holes and pattern in ("sparse_zeros", "positive", "negative"):
        keep = rng.random(shape) < 0.5
        first = rng.integers(0, length, size=shape[:-1])
        np.put_along_axis(keep, first[..., None], True, axis=-1)
        return np.asarray(keep)
    kept = rng.integers(1, length + 1, size=shape[:-1])[..., None]
    positions = np.arange(length)
    left = rng.random(shape[:-1])[..., None] < 0.5 if pattern in ("uniform", "negative") else False
    return np.asarray(np.where(left, positions >= length - kept, positions < kept))
