"""Compare a reference's outputs with ONNX Runtime's: pure functions, numpy only.

Checks run in order and stop at the first that fails: output count, names, dtype, shape, non-finite
values (NaN/Inf in the same places), then values. The value rule, per element::

    |onnx - ref| <= max(atol * scale + rtol * |ref|,  noise_factor * noise),   scale = max |ref| over the output

``scale`` makes ``atol`` relative to the output's real magnitude (tiny outputs are compared too);
``noise`` is the reference's own rounding error at that element (a float64 run, a 1-ulp perturbation of
the inputs), so an ill-conditioned input does not raise a false alarm while a well-conditioned one is
held to float32 precision. Integer and bool outputs must be equal (index outputs accept a tie: another
index of an equal value). Positions a mask marks as padding can be excluded. The check, the report,
replay and the benchmark all use :func:`compare` and :class:`OutputFigures`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..options.names import NOISE_FACTOR
from . import tolerance
from .figures import OutputFigures
from .kinds import FailureKind, Problem
from .tolerance import TolerancePolicy

if TYPE_CHECKING:
    import numpy as np

WORST_ROWS = 5
#: How many times the reference's own rounding error ONNX Runtime may be off (two float32 runtimes with
#: different kernels, reduction orders and transcendental approximations).
#: The noise level every element of an output is credited with: this quantile of its elements' noise.
NOISE_QUANTILE = 0.9


@dataclasses.dataclass
class OutputContext:
    """What else is known about one output on one input set."""

    #: The reference's own rounding error per element (same shape as the output), or None.
    noise: Any = None
    #: Positions not compared (padding), broadcastable to the output, or None.
    exclude: Any = None
    #: For an index output (ArgMax, TopK): the values it indexes and the axis, so ties can be accepted.
    index_data: tuple[Any, int] | None = None


@dataclasses.dataclass
class FailingCase:
    """A failing input set kept in memory for artifacts and localization: the inputs and the reference's outputs."""

    feed: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] | None
    #: What the comparison knew per output (the reference's noise, padding), so replay judges the same way.
    context: dict[str, OutputContext] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Verdict:
    """The comparison of one input set: ``problem`` is None when every check passed."""

    outputs: list[OutputFigures]
    worst: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    kind: FailureKind | None = None
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
    context: Mapping[str, OutputContext] | None = None,
) -> Verdict:
    """Compare outputs position by position; names must match too when ``check_names``.

    ``context`` (by the reference's output names) adds the reference's noise, padding, index data.
    """
    import numpy as np

    names, onnx_names = list(reference), list(onnx)
    if len(names) != len(onnx_names):
        return Verdict(
            [],
            [],
            FailureKind.COUNT,
            f"the model returns {len(names)} output(s) {names} but the ONNX graph has {len(onnx_names)} {onnx_names}",
        )
    if check_names and names != onnx_names:
        return Verdict(
            [],
            [],
            FailureKind.NAMES,
            f"output names differ: the model's outputs in order are {names}, the ONNX "
            f"graph's are {onnx_names} (swapped or renamed outputs break consumers that look outputs up "
            "by name or position; pass output_names=... if the names differ on purpose)",
        )
    verdict = Verdict([])
    for name, got in zip(names, onnx.values()):
        ref, got = np.asarray(reference[name]), np.asarray(got)
        if ref.dtype != got.dtype:
            return _stop(
                verdict,
                FailureKind.DTYPE,
                name,
                f"output {name!r} has dtype {got.dtype} in ONNX but {ref.dtype} in the model",
            )
        if ref.shape != got.shape:
            return _stop(
                verdict,
                FailureKind.SHAPE,
                name,
                f"output {name!r} has shape {tuple(got.shape)} in ONNX but {tuple(ref.shape)} in the model",
            )
        atol, rtol = policy.for_output(name, ref.dtype.name)
        limits = policy.limits(name, ref.dtype.name, ref.ndim)
        figures, worst, problem = compare_values(
            name, ref, got, atol, rtol, (context or {}).get(name), policy.noise_factor, limits
        )
        if policy.variant is not None and not limits and tolerance.is_float(ref.dtype.name):
            figures.metrics, figures.rows = _metrics(ref, got, (context or {}).get(name))
        verdict.outputs.append(figures)
        verdict.worst += worst
        if problem is not None:
            return _stop(verdict, problem.kind, name, f"output {name!r}: {problem.text}")
    return verdict


def _metrics(ref: np.ndarray, got: np.ndarray, context: OutputContext | None) -> tuple[dict[str, float], int]:
    import numpy as np

    from . import metrics

    exclude = None if context is None else context.exclude
    return metrics.measure(ref, got, None if exclude is None else ~np.broadcast_to(exclude, ref.shape))


def _stop(verdict: Verdict, kind: FailureKind, name: str, problem: str) -> Verdict:
    verdict.kind, verdict.output, verdict.problem = kind, name, problem
    return verdict


def compare_values(
    name: str,
    ref: np.ndarray,
    got: np.ndarray,
    atol: float,
    rtol: float,
    context: OutputContext | None = None,
    noise_factor: float = NOISE_FACTOR,
    limits: Mapping[str, float] | None = None,
) -> tuple[OutputFigures, list[dict[str, Any]], Problem | None]:
    """Element-wise rule on one output: (figures, the worst elements past tolerance, problem or None).

    With metric ``limits`` (an int8 variant), the per-input-set metrics (cosine, SNR) judge instead of the
    element-wise rule, whose figures are still reported.
    """
    import numpy as np

    from . import metrics

    ctx = context or OutputContext()
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    valid = np.ones(ref.shape, bool) if ctx.exclude is None else ~np.broadcast_to(ctx.exclude, ref.shape)
    nonfinite_problem, nonfinite_bad = _nonfinite(np.where(valid, ref64, 0.0), np.where(valid, got64, 0.0))
    both_finite = np.isfinite(ref64) & np.isfinite(got64) & valid
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_finite, np.abs(got64 - ref64), 0.0)
    abs_ref = np.where(both_finite, np.abs(ref64), 0.0)
    scale = float(abs_ref.max()) if abs_ref.size else 0.0
    floor = atol * scale + rtol * abs_ref
    noise = np.zeros(ref.shape) if ctx.noise is None else np.where(both_finite, np.asarray(ctx.noise, float), 0.0)
    if both_finite.any():
        # No element is quieter than the output's typical noise (where the reference happened to round luckily,
        # the other runtime need not); a few spikes (a discontinuity under the perturbation) stay local.
        noise = np.maximum(noise, float(np.quantile(noise[both_finite], NOISE_QUANTILE)))
    allowed = np.maximum(floor, noise_factor * noise)
    bad = (diff > allowed) | nonfinite_bad
    ties = np.zeros(ref.shape, bool)
    if ctx.index_data is not None and bad.any():
        ties = bad & _ties(ref, got, *ctx.index_data)
        bad &= ~ties
        diff = np.where(ties, 0.0, diff)
    diff = np.where(nonfinite_bad, np.inf, diff)  # a NaN/Inf where the other side differs: infinitely off
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(abs_ref > 0, diff / abs_ref, np.where(nonfinite_bad, np.inf, 0.0))
        used = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    total, mismatched = int(valid.sum()), int(bad.sum())
    peak = np.unravel_index(int(np.argmax(used)), ref.shape) if ref.size else ()
    figures = OutputFigures(
        name=name,
        total=total,
        mismatched=mismatched,
        max_abs_diff=float(diff.max()) if ref.size else 0.0,
        max_rel_diff=float(rel.max()) if ref.size else 0.0,
        sum_abs_diff=float(diff.sum()),
        sum_rel_diff=float(rel.sum()),
        atol=atol,
        rtol=rtol,
        tolerance_used=float(used.max()) if ref.size else 0.0,
        rule="noise" if ref.size and noise_factor * noise[peak] > floor[peak] else "tolerance",
        noise=float(noise.max()) if ref.size else 0.0,
        excluded=int(ref.size - total),
        ties=int(ties.sum()),
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
        return figures, worst, Problem(FailureKind.NONFINITE, nonfinite_problem)
    if limits:
        figures.metrics, figures.rows = metrics.measure(ref, got, valid, top_k=any(k in limits for k in metrics.TOP_K))
        figures.limits, figures.mismatched, figures.rule = dict(limits), 0, "metrics"
        figures.tolerance_used = metrics.used(figures.metrics, limits, metrics.PER_INPUT)
        short = metrics.shortfalls(figures.metrics, limits, metrics.PER_INPUT)
        return (
            figures,
            worst,
            Problem(FailureKind.METRICS, f"below the variant's thresholds: {', '.join(short)}") if short else None,
        )
    if mismatched:
        rule = f"|onnx - ref| <= max({atol:g} * {scale:.6g} + {rtol:g} * |ref|, {noise_factor:g} * noise)"
        return (
            figures,
            worst,
            Problem(FailureKind.VALUES, f"{mismatched} of {total} elements differ beyond tolerance ({rule})"),
        )
    return figures, worst, None


def _ties(ref: np.ndarray, got: np.ndarray, data: np.ndarray, axis: int) -> np.ndarray:
    """Where two indices select values of ``data`` that are equal (float32 rounding apart): a tie."""
    import numpy as np

    shape = ref.shape
    if ref.ndim < data.ndim:  # ArgMax/ArgMin without keepdims
        ref, got = np.expand_dims(ref, axis), np.expand_dims(got, axis)
    extent = data.shape[axis]
    picked_ref = np.take_along_axis(data, np.clip(ref, 0, extent - 1).astype(np.int64), axis).astype(np.float64)
    picked_got = np.take_along_axis(data, np.clip(got, 0, extent - 1).astype(np.int64), axis).astype(np.float64)
    scale = float(np.abs(data).max()) if data.size else 0.0
    close = np.abs(picked_ref - picked_got) <= 1e-6 * scale + 1e-5 * np.abs(picked_ref)
    in_range = (ref >= 0) & (ref < extent) & (got >= 0) & (got < extent)
    return np.asarray(close & in_range).reshape(shape)


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
