"""Compare framework outputs with ONNX Runtime outputs. numpy only.

Checks run in order and stop at the first that fails: output count, names, dtype, shape,
non-finite values (NaN/Inf in the same places), then values. The value rule, per element::

    |onnx - ref| <= atol * scale + rtol * |ref|,   scale = max(1, max |ref| over that output)

``scale`` makes ``atol`` relative to the output's own magnitude, so float32 rounding on large-magnitude
inputs (x1e3) does not raise false alarms while a defect of 1e-3 on unit-scale outputs still fails.
Integer and bool outputs must be equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: (atol, rtol) by dtype kind/size; integers and bools are exact.
_DEFAULTS = {
    "float16": (1e-3, 1e-2),
    "bfloat16": (1e-2, 2e-2),
    "float32": (1e-5, 1e-4),
    "float64": (1e-7, 1e-6),
}
WORST_ROWS = 5


def default_tolerance(dtype: Any) -> tuple[float, float]:
    """Default (atol, rtol) for an output dtype: float32 looser than exact, float16 looser still."""
    import numpy as np

    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating) and dtype.name != "bfloat16":
        return 0.0, 0.0
    return _DEFAULTS.get(dtype.name, _DEFAULTS["float32"])


def tolerance_for(name: str, dtype: Any, atol: Any, rtol: Any) -> tuple[float, float]:
    """The tolerance of one output: the user's (number or per-output dict) for floats, else the default."""
    import numpy as np

    default_atol, default_rtol = default_tolerance(dtype)
    if not np.issubdtype(np.dtype(dtype), np.floating):
        exact = (isinstance(atol, Mapping) and name in atol) or (isinstance(rtol, Mapping) and name in rtol)
        if not exact:
            return 0.0, 0.0

    def pick(value: Any, default: float) -> float:
        if isinstance(value, Mapping):
            return float(value.get(name, default))
        return default if value is None else float(value)

    return pick(atol, default_atol), pick(rtol, default_rtol)


@dataclasses.dataclass
class WorstElement:
    index: tuple[int, ...]
    reference: float
    onnx: float
    abs_diff: float
    allowed: float


@dataclasses.dataclass
class OutputComparison:
    """One output of one input set."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    total: int
    mismatched: int
    max_abs_diff: float
    mean_abs_diff: float
    max_rel_diff: float
    mean_rel_diff: float
    tolerance_used: float
    atol: float
    rtol: float
    worst: list[WorstElement]


@dataclasses.dataclass
class Comparison:
    """The verdict on one input set: ``problem`` is None when every check passed."""

    outputs: list[OutputComparison]
    problem: str | None = None
    kind: str | None = None
    output: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None


def compare(
    names: Sequence[str],
    reference: Sequence[np.ndarray],
    onnx_names: Sequence[str],
    onnx: Sequence[np.ndarray],
    atol: Any,
    rtol: Any,
    check_names: bool = True,
) -> Comparison:
    """Compare the framework's outputs (``names``/``reference``) with ONNX Runtime's, position by position."""
    import numpy as np

    if len(reference) != len(onnx):
        return Comparison(
            [],
            f"the model returns {len(reference)} output(s) {list(names)} but the ONNX graph has "
            f"{len(onnx)} {list(onnx_names)}",
            "count",
        )
    if check_names and list(names) != list(onnx_names):
        return Comparison(
            [],
            f"output names differ: the model's outputs in order are {list(names)}, the ONNX graph's are "
            f"{list(onnx_names)} (swapped or renamed outputs break consumers that look outputs up by name "
            "or position; pass output_names=... if the names differ on purpose)",
            "names",
        )
    results: list[OutputComparison] = []
    for name, ref, got in zip(names, reference, onnx):
        ref, got = np.asarray(ref), np.asarray(got)
        if ref.dtype != got.dtype:
            return Comparison(
                results, f"output {name!r} has dtype {got.dtype} in ONNX but {ref.dtype} in the model", "dtype", name
            )
        if ref.shape != got.shape:
            return Comparison(
                results,
                f"output {name!r} has shape {tuple(got.shape)} in ONNX but {tuple(ref.shape)} in the model",
                "shape",
                name,
            )
        out_atol, out_rtol = tolerance_for(name, ref.dtype, atol, rtol)
        result, problem = _compare_values(name, ref, got, out_atol, out_rtol)
        results.append(result)
        if problem is not None:
            kind = "nonfinite" if problem.startswith("non-finite") else "values"
            return Comparison(results, f"output {name!r}: {problem}", kind, name)
    return Comparison(results)


def _compare_values(
    name: str, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float
) -> tuple[OutputComparison, str | None]:
    import numpy as np

    total = int(ref.size)
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    floating = np.issubdtype(ref.dtype, np.floating)
    finite_problem, nonfinite_bad = _nonfinite_problem(ref64, got64) if floating else (None, None)
    both_finite = np.isfinite(ref64) & np.isfinite(got64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_finite, np.abs(got64 - ref64), 0.0)
    abs_ref = np.where(both_finite, np.abs(ref64), 0.0)
    scale = max(1.0, float(abs_ref.max())) if abs_ref.size else 1.0
    allowed = atol * scale + rtol * abs_ref
    bad = diff > allowed
    if nonfinite_bad is not None:
        # A NaN/Inf where the other side has a number (or another non-finite) is an infinite difference.
        bad |= nonfinite_bad
        diff = np.where(nonfinite_bad, np.inf, diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Relative error is defined where the reference is non-zero (and infinite at a non-finite mismatch).
        rel = np.where(abs_ref > 0, diff / abs_ref, 0.0)
        used = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    if nonfinite_bad is not None:
        rel = np.where(nonfinite_bad, np.inf, rel)
    mismatched = int(bad.sum())
    worst = []
    if mismatched:
        with np.errstate(invalid="ignore"):
            order = np.argsort(-np.nan_to_num(diff - allowed, nan=np.inf, posinf=np.inf), axis=None, kind="stable")
        for flat in order[:WORST_ROWS]:
            idx = tuple(int(i) for i in np.unravel_index(int(flat), ref.shape))
            if not bad[idx]:
                break
            worst.append(WorstElement(idx, float(ref64[idx]), float(got64[idx]), float(diff[idx]), float(allowed[idx])))
    result = OutputComparison(
        name=name,
        dtype=str(ref.dtype),
        shape=tuple(ref.shape),
        total=total,
        mismatched=mismatched,
        max_abs_diff=float(diff.max()) if total else 0.0,
        mean_abs_diff=float(diff.mean()) if total else 0.0,
        max_rel_diff=float(rel.max()) if total else 0.0,
        mean_rel_diff=float(rel.mean()) if total else 0.0,
        tolerance_used=float(used.max()) if total else 0.0,
        atol=atol,
        rtol=rtol,
        worst=worst,
    )
    if finite_problem is not None:
        return result, finite_problem
    if mismatched:
        return result, (
            f"{mismatched} of {total} elements differ beyond tolerance "
            f"(|onnx - ref| <= {atol:g} * {scale:g} + {rtol:g} * |ref|)"
        )
    return result, None


def _nonfinite_problem(ref: np.ndarray, got: np.ndarray) -> tuple[str | None, np.ndarray]:
    """NaN and +/-Inf must sit in the same places with the same sign: (problem, positions that disagree)."""
    import numpy as np

    disagree = np.zeros(ref.shape, dtype=bool)
    problem = None
    for label, ref_mask, got_mask in (
        ("NaN", np.isnan(ref), np.isnan(got)),
        ("+Inf", np.isposinf(ref), np.isposinf(got)),
        ("-Inf", np.isneginf(ref), np.isneginf(got)),
    ):
        differ = ref_mask != got_mask
        if differ.any() and problem is None:
            first = tuple(int(i) for i in np.argwhere(differ)[0])
            problem = (
                f"non-finite values differ: {int(got_mask.sum())} {label} in ONNX vs {int(ref_mask.sum())} in the "
                f"model, {int(differ.sum())} position(s) disagree, first at index {first} "
                f"(model {float(ref[first])!r}, onnx {float(got[first])!r})"
            )
        disagree |= differ
    return problem, disagree
