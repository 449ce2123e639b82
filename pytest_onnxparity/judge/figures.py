"""OutputFigures: what the comparison of one output measured, over one input set or merged over every input set
checked. Standard library only; the report, the summary, replay and the benchmark read it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


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
    #: Which term of the rule set the allowance where the most tolerance was used: "tolerance" or "noise".
    rule: str = "tolerance"
    #: The largest rounding error of the reference itself seen on this output.
    noise: float = 0.0
    #: Elements not compared (padded positions), and index mismatches accepted as ties.
    excluded: int = 0
    ties: int = 0
    #: For a variant: cosine, snr_db, top1, top5 (``metrics.py``), and the rows top-k was taken over.
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    rows: int = 0
    #: The metric thresholds that judge this output instead of atol/rtol (an int8 variant); then
    #: ``tolerance_used`` is the share of their allowance used and ``rule`` is "metrics".
    limits: dict[str, float] = dataclasses.field(default_factory=dict)
    #: The largest share used by one input set (element-wise rule, or cosine/SNR); top-k is pooled over input
    #: sets, so a merged ``tolerance_used`` is the larger of this and the pooled top-k share.
    per_input_used: float = 0.0

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
        if other.tolerance_used >= self.per_input_used:
            self.per_input_used, self.rule = other.tolerance_used, other.rule
        self.tolerance_used = self.per_input_used
        self.noise = max(self.noise, other.noise)
        self.excluded += other.excluded
        self.ties += other.ties
        self.atol, self.rtol = other.atol, other.rtol
        if other.metrics:
            from . import metrics

            self.metrics = metrics.merge(self.metrics, self.rows, other.metrics, other.rows)
            self.rows += other.rows
        self.limits = other.limits or self.limits
        if self.limits:  # the pooled agreement so far, not the lowest seen on the way (that would exceed 100%)
            from . import metrics

            self.tolerance_used = max(self.per_input_used, metrics.used(self.metrics, self.limits, ("top1", "top5")))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(mean_abs_diff=self.mean_abs_diff, mean_rel_diff=self.mean_rel_diff)
        return out
