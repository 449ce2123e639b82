"""How far each dynamic axis is walked: the limits a model declares (a position table, a position buffer, a
``max_len`` attribute), the axes no limit is known for, and the sizes planned on each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .recipes import dim_sizes

if TYPE_CHECKING:
    from ..options.settings import CheckOptions
    from .spec import TensorSpec

#: How far a non-batch axis is walked when neither the model nor the user says its limit.
DEFAULT_AXIS_LIMIT = 512


def next_prime(n: int) -> int:
    n = max(2, n)
    while any(n % d == 0 for d in range(2, int(n**0.5) + 1)):
        n += 1
    return n


class AxisLimits(dict[str, int]):
    """The largest size each non-batch axis is planned to, by dim; ``open`` names the axes no limit is known for
    (the search keeps doubling them past the plan) and ``source`` says where each known limit comes from."""

    def __init__(self, limits: Mapping[str, int], open_axes: set[str], source: Mapping[str, str]) -> None:
        super().__init__(limits)
        self.open = frozenset(open_axes)
        self.source = dict(source)


def axis_limits(specs: list[TensorSpec], sequence_limit: int | None, length_limits: tuple[int, ...] = ()) -> AxisLimits:
    """The largest size each non-batch axis is walked to: the model's position table for axes of id and mask
    inputs; else the shortest position buffer or ``max_len``-like attribute (``length_limits``) at least as long as
    the example on that axis; else :data:`DEFAULT_AXIS_LIMIT` (or twice the example, when that is longer), and the
    axis is open: the search doubles it past that until the model rejects a size or the time budget ends."""
    sizes, batch = dim_sizes(specs)
    on_ids = {dim for s in specs if s.kind != "float" for a, dim in s.dynamic.items() if a != 0}
    limits, open_axes, source = {}, set(), {}
    for dim, n in sizes.items():
        if dim in batch:
            continue
        fitting = [length for length in length_limits if length >= n]
        if sequence_limit and dim in on_ids:
            limits[dim], source[dim] = max(sequence_limit, n), "the model's position table"
        elif fitting:
            limits[dim], source[dim] = min(fitting), "a position buffer or length attribute of the model"
        else:
            limits[dim] = max(DEFAULT_AXIS_LIMIT, 2 * n)
            open_axes.add(dim)
    return AxisLimits(limits, open_axes, source)


def axis_plan(specs: list[TensorSpec], options: CheckOptions, limits: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """The sizes each dynamic axis is checked at: ``axis_sizes``, else the batch sizes for batch axes, else
    1, 3, the example, primes past each doubling of it, and the axis's limit."""
    sizes, batch = dim_sizes(specs)
    plan = {}
    for dim, n in sizes.items():
        if dim in options.axis_sizes:
            plan[dim] = options.axis_sizes[dim]
        elif dim in batch:
            plan[dim] = options.batch_sizes
        else:
            limit, walk, k = limits[dim], {1, 3, n, max(1, n // 2) | 1}, 2 * n
            while k < limit:
                walk.add(next_prime(k))
                k *= 2
            plan[dim] = tuple(sorted(s for s in walk | {limit} if s <= limit))
    return plan
