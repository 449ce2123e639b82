"""A failure that depends on a dynamic size, summarized over that axis: the failing input set rerun at each planned
size, each size sorted into *matches*, *wrong values* (a wrong result or shape) and *ONNX Runtime error*, so a
crash at one size does not hide silent errors at others (an ``AdaptiveAvgPool2d`` whose window was baked from the
example crashes at height 1 and is silently wrong at 16x16).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..inputs.spec import Recipe
from ..judge.kinds import COMPARED, FailureKind

if TYPE_CHECKING:
    from ..report.parity import Failure
    from .probe import Probe

#: The failures a size can cause.
SPLIT = COMPARED | {FailureKind.ONNXRUNTIME_ERROR}
BUCKETS = ("matches", "wrong values", "ONNX Runtime error")
#: At most this many sizes per axis (the planned sizes, smallest first, and the failing one).
MOST = 8


def split(
    probe: Probe, failure: Failure | None, plan: Mapping[str, tuple[int, ...]], budget: float
) -> dict[str, dict[str, list[int]]]:
    """Per dynamic axis of the failing input set (and all non-batch axes together, ``height=width``, where an
    input has several): the sizes checked, by bucket. Empty when there is no axis to vary or nothing differs by
    size. Runs within ``budget`` seconds; the sizes it had no time for are left out."""
    if failure is None or failure.kind not in SPLIT or not failure.recipe:
        return {}
    failing = Recipe.from_dict(failure.recipe)
    dims = failing.dims_dict()
    axes: dict[str, tuple[str, ...]] = {dim: (dim,) for dim in dims if len(plan.get(dim, ())) > 1}
    spatial = tuple(dim for dim in axes if dim != "batch")
    if len(spatial) > 1:
        axes["=".join(spatial)] = spatial
    deadline = time.monotonic() + budget
    out: dict[str, dict[str, list[int]]] = {}
    for label, together in axes.items():
        sizes = (
            sorted({*plan[together[0]][:MOST], dims[together[0]]})
            if len(together) == 1
            else sorted(set.intersection(*(set(plan[d][:MOST]) for d in together)))
        )
        buckets: dict[str, list[int]] = {bucket: [] for bucket in BUCKETS}
        for size in sizes:
            if time.monotonic() > deadline:
                break
            sized = tuple((d, size if d in together else n) for d, n in failing.dims)
            recipe = Recipe(f"sizes: {label}={size}", sized, failing.pattern, failing.scale, failing.seed)
            try:
                found = failure if recipe.dims == failing.dims else probe(recipe)
            except Exception:  # the summary must never replace the failure it summarizes: that size is left out
                continue
            if recipe in probe.record.rejected:
                continue  # outside what the model itself accepts: not the conversion's to answer for
            kind = (
                "matches"
                if found is None
                else BUCKETS[2]
                if found.kind == FailureKind.ONNXRUNTIME_ERROR
                else BUCKETS[1]
            )
            buckets[kind].append(size)
        if sum(len(b) > 0 for b in buckets.values()) > 1:  # the result depends on the size
            out[label] = {bucket: sizes for bucket, sizes in buckets.items() if sizes}
    return out
