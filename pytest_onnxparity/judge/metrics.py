"""Metrics a user can reason about, for variants that are not meant to be exact (int8): cosine similarity and
signal-to-noise ratio (dB) per output, and top-1 / top-5 agreement for classification-like outputs.

Numpy only. Cosine and SNR judge each input set on its own (the worst input set decides); top-k agreement
is pooled over every row of every input set checked (one flipped near-tie in a batch of one is not a
verdict on a model). Every variant's report shows all four, whatever decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..options.names import METRICS, QUANTIZED_METRICS, QUANTIZED_VARIANTS

if TYPE_CHECKING:
    import numpy as np

#: Thresholds by variant (``variant_metrics`` overrides them, per variant or per output).
DEFAULTS: dict[str, dict[str, float]] = {variant: dict(QUANTIZED_METRICS) for variant in QUANTIZED_VARIANTS}
#: Judged per input set; the others are pooled over input sets (weighted by rows).
PER_INPUT = ("cosine", "snr_db")
#: Top-5 needs at least this many classes to mean anything.
TOP5_CLASSES = 10
#: Reference scores this close (relative) to the best one tie with it: either class agrees.
TIE = 1e-6
TOP_K = ("top1", "top5")


def measure(
    ref: np.ndarray, got: np.ndarray, valid: np.ndarray | None = None, top_k: bool = True
) -> tuple[dict[str, float], int]:
    """(metrics of ``got`` against ``ref``, classification rows): cosine and SNR over the compared elements
    (none when the reference is all zeros there and ``got`` is not: no signal to measure against); with ``top_k``,
    top-1/top-5 agreement over rows of the last axis (classes) where that axis has 2 or more entries. A class
    the variant picks whose reference score ties the best one (float32 rounding apart) agrees."""
    import numpy as np

    keep = np.ones(ref.shape, bool) if valid is None else np.broadcast_to(valid, ref.shape)
    a64, b64 = ref.astype(np.float64), got.astype(np.float64)
    keep = keep & np.isfinite(a64) & np.isfinite(b64)
    a, b = a64[keep], b64[keep]
    signal, noise = float(np.sum(a**2)), float(np.sum((a - b) ** 2))
    norms = float(np.sqrt(signal * float(np.sum(b**2))))
    out: dict[str, float] = {}
    if signal > 0 or noise == 0:
        out["cosine"] = float(a @ b / norms) if norms > 0 else float(noise == 0)
        out["snr_db"] = float(10 * np.log10(signal / noise)) if noise > 0 else float(np.inf)
    classes = ref.shape[-1] if ref.ndim >= 2 else 0
    rows = 0
    if top_k and classes >= 2 and ref.size:
        kept = keep.reshape(-1, classes).all(-1)
        rows_ref, rows_got = a64.reshape(-1, classes)[kept], b64.reshape(-1, classes)[kept]
        rows = len(rows_ref)
        if rows:
            peak = rows_ref.max(-1, keepdims=True)
            tied = rows_ref >= peak - TIE * np.abs(peak)  # every class as good as the reference's best
            picked = np.argsort(-rows_got, axis=-1, kind="stable")
            out["top1"] = float(np.mean(np.take_along_axis(tied, picked[:, :1], -1).any(-1)))
            if classes >= TOP5_CLASSES:
                out["top5"] = float(np.mean(np.take_along_axis(tied, picked[:, :5], -1).any(-1)))
    return out, rows


def merge(mine: dict[str, float], rows: int, theirs: Mapping[str, float], their_rows: int) -> dict[str, float]:
    """Two input sets' metrics as one: the worst cosine/SNR, top-k pooled by rows."""
    out = dict(mine)
    for name, value in theirs.items():
        if name not in out:
            out[name] = value
        elif name in PER_INPUT:
            out[name] = min(out[name], value)
        elif rows + their_rows:
            out[name] = (out[name] * rows + value * their_rows) / (rows + their_rows)
    return out


def used(values: Mapping[str, float], limits: Mapping[str, float], names: tuple[str, ...] = METRICS) -> float:
    """The share of the allowance used, as the element-wise rule's ``tolerance_used`` (1.0: the edge of failing):
    the error power against the error power a threshold allows: ``(1 - cosine) / (1 - limit)`` (so for top-k),
    ``10 ** ((limit - snr) / 10)`` for SNR."""
    import math

    shares = [0.0]
    for name in names:
        if name in limits and name in values:
            value, limit = values[name], limits[name]
            if name == "snr_db":
                shares.append(
                    math.inf if value == -math.inf else 10 ** ((limit - value) / 10) if value < math.inf else 0.0
                )
            else:
                shares.append((1 - value) / (1 - limit) if limit < 1 else (math.inf if value < 1 else 0.0))
    return max(shares)


def shortfalls(values: Mapping[str, float], limits: Mapping[str, float], names: tuple[str, ...] = METRICS) -> list[str]:
    """The metrics of ``names`` below their thresholds, worded: ``cosine 0.931 < 0.99``."""
    return [
        f"{name} {values[name]:.4g} < {limits[name]:g}"
        for name in names
        if name in limits and name in values and not values[name] >= limits[name]
    ]


def text(values: Mapping[str, float]) -> str:
    """``cosine 0.99987, SNR 38.1 dB, top-1 1.000, top-5 1.000``."""
    labels = {"cosine": ("cosine", ".5f"), "snr_db": ("SNR", ".1f"), "top1": ("top-1", ".3f"), "top5": ("top-5", ".3f")}
    parts = []
    for name in METRICS:
        if name in values:
            label, spec = labels[name]
            parts.append(f"{label} {format(values[name], spec)}" + (" dB" if name == "snr_db" else ""))
    return ", ".join(parts)


def thresholds(
    variant: str | None, output: str, overrides: Mapping[str, Mapping[str, Any]], ndim: int = 2
) -> dict[str, float]:
    """The thresholds of one output: ``variant_metrics[variant]`` (per metric, then per output name) over the
    defaults; {} when the variant has none (it is judged element by element).

    Top-1/top-5 judge class scores, (rows, classes) outputs: an output of other rank (a feature map, hidden
    states, boxes) gets them only where ``variant_metrics`` names them for that output."""
    if variant is None:
        return {}
    chosen = dict(DEFAULTS.get(variant, {}))
    mine = overrides.get(variant, {})
    chosen.update({k: float(v) for k, v in mine.items() if k in METRICS})
    per_output = mine.get(output)
    named = per_output if isinstance(per_output, Mapping) else {}
    chosen.update({k: float(v) for k, v in named.items() if k in METRICS})
    if ndim != 2:
        chosen = {k: v for k, v in chosen.items() if k not in TOP_K or k in named}
    return {k: v for k, v in chosen.items() if k not in TOP_K or v > 0}  # top-k at 0: not judged (an embedding)
