"""Compare a reference's outputs with ONNX Runtime's: pure functions, numpy only.

Checks run in order and stop at the first that fails: output count, names, dtype, shape, non-finite
values (NaN/Inf in the same places), then values. The value rule, per element::

    |onnx - ref| <= atol * scale + rtol * |ref|,   scale = max(1, max |ref| over that output)

``scale`` makes ``atol`` relative to the output's own magnitude, so float32 rounding on large-magnitude
inputs (x1e3) does not raise false alarms while a defect of 1e-3 on unit-scale outputs still fails.
Integer and bool outputs must be equal. The check, the report, replay and the benchmark all use
:func:`compare` and :class:`OutputFigures`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .tolerance import TolerancePolicy

if TYPE_CHECKING:
    import numpy as np

WORST_ROWS = 5


@dataclasses.dataclass
class OutputFigures:
    """The parity figures of one output: over one input set, or merged over every input set checked."""

    name: str
    total: int = 0
    mismatched: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    sum_abs_diff: float = 0.0
    sum_rel_diff: float = 0.0
    atol: float = 0.0
    rtol: float = 0.0
    #: Largest ``|diff| / allowed``: 1.0 is the edge of failing.
    tolerance_used: float = 0.0

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.total if self.total else 0.0

    @property
    def mean_rel_diff(self) -> float:
        return self.sum_rel_diff / self.total if self.total else 0.0

    def merge(self, other: OutputFigures) -> None:
        """Fold another input set's figures of the same output into these."""
        self.total += other.total
        self.mismatched += other.mismatched
        self.sum_abs_diff += other.sum_abs_diff
        self.sum_rel_diff += other.sum_rel_diff
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)
        self.max_rel_diff = max(self.max_rel_diff, other.max_rel_diff)
        self.tolerance_used = max(self.tolerance_used, other.tolerance_used)
        self.atol, self.rtol = other.atol, other.rtol

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(mean_abs_diff=self.mean_abs_diff, mean_rel_diff=self.mean_rel_diff)
        return out


@dataclasses.dataclass
class Verdict:
    """The comparison of one input set: ``problem`` is None when every check passed."""

    outputs: list[OutputFigures]
    worst: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    kind: str | None = None  # count | names | dtype | shape | nonfinite | values
    problem: str | None = None
    output: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None


def compare(
    reference: Mapping[str, np.ndarray],
    onnx: Mapping[str, np.ndarray],
    policy: TolerancePolicy,
    check_names: bool = True,
) -> Verdict:
    """Compare outputs position by position; names must match too when ``check_names``."""
    import numpy as np

    names, onnx_names = list(reference), list(onnx)
    if len(names) != len(onnx_names):
        return Verdict(
            [],
            [],
            "count",
            f"the model returns {len(names)} output(s) {names} but the ONNX graph has {len(onnx_names)} {onnx_names}",
        )
    if check_names and names != onnx_names:
        return Verdict(
            [],
            [],
            "names",
            f"output names differ: the model's outputs in order are {names}, the ONNX "
            f"graph's are {onnx_names} (swapped or renamed outputs break consumers that look outputs up "
            "by name or position; pass output_names=... if the names differ on purpose)",
        )
    verdict = Verdict([])
    for name, got in zip(names, onnx.values()):
        ref, got = np.asarray(reference[name]), np.asarray(got)
        if ref.dtype != got.dtype:
            return _stop(
                verdict, "dtype", name, f"output {name!r} has dtype {got.dtype} in ONNX but {ref.dtype} in the model"
            )
        if ref.shape != got.shape:
            return _stop(
                verdict,
                "shape",
                name,
                f"output {name!r} has shape {tuple(got.shape)} in ONNX but {tuple(ref.shape)} in the model",
            )
        figures, worst, problem = compare_values(name, ref, got, *policy.for_output(name, ref.dtype.name))
        verdict.outputs.append(figures)
        verdict.worst += worst
        if problem is not None:
            return _stop(
                verdict,
                "nonfinite" if problem.startswith("non-finite") else "values",
                name,
                f"output {name!r}: {problem}",
            )
    return verdict


def _stop(verdict: Verdict, kind: str, name: str, problem: str) -> Verdict:
    verdict.kind, verdict.output, verdict.problem = kind, name, problem
    return verdict


def compare_values(
    name: str, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float
) -> tuple[OutputFigures, list[dict[str, Any]], str | None]:
    """Element-wise rule on one output: (figures, the worst elements past tolerance, problem or None)."""
    import numpy as np

    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    nonfinite_problem, nonfinite_bad = _nonfinite(ref64, got64)
    both_finite = np.isfinite(ref64) & np.isfinite(got64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_finite, np.abs(got64 - ref64), 0.0)
    abs_ref = np.where(both_finite, np.abs(ref64), 0.0)
    scale = max(1.0, float(abs_ref.max())) if abs_ref.size else 1.0
    allowed = atol * scale + rtol * abs_ref
    bad = (diff > allowed) | nonfinite_bad
    diff = np.where(nonfinite_bad, np.inf, diff)  # a NaN/Inf where the other side differs: infinitely off
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(abs_ref > 0, diff / abs_ref, np.where(nonfinite_bad, np.inf, 0.0))
        used = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    total, mismatched = int(ref.size), int(bad.sum())
    figures = OutputFigures(
        name=name,
        total=total,
        mismatched=mismatched,
        max_abs_diff=float(diff.max()) if total else 0.0,
        max_rel_diff=float(rel.max()) if total else 0.0,
        sum_abs_diff=float(diff.sum()),
        sum_rel_diff=float(rel.sum()),
        atol=atol,
        rtol=rtol,
        tolerance_used=float(used.max()) if total else 0.0,
    )
    worst = []
    if mismatched:
        with np.errstate(invalid="ignore"):
            order = np.argsort(-np.nan_to_num(diff - allowed, nan=np.inf, posinf=np.inf), axis=None, kind="stable")
        for flat in order[:WORST_ROWS]:
            idx = tuple(int(i) for i in np.unravel_index(int(flat), ref.shape))
            if bad[idx]:
                worst.append(
                    dict(
                        output=name,
                        index=idx,
                        reference=float(ref64[idx]),
                        onnx=float(got64[idx]),
                        abs_diff=float(diff[idx]),
                        allowed=float(allowed[idx]),
                    )
                )
    if nonfinite_problem is not None:
        return figures, worst, nonfinite_problem
    if mismatched:
        rule = f"|onnx - ref| <= {atol:g} * {scale:g} + {rtol:g} * |ref|"
        return figures, worst, f"{mismatched} of {total} elements differ beyond tolerance ({rule})"
    return figures, worst, None


def _nonfinite(ref: np.ndarray, got: np.ndarray) -> tuple[str | None, np.ndarray]:
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
