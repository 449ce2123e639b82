"""Top-k agreement of a variant judged by metrics (int8), pooled over every input set checked.

A flipped near-tie in a batch of one is not a verdict on a quantized model; the share of rows whose top-1 class
(and top-5 set) agrees with the model's, over all rows checked, is. The input set with the lowest agreement is
kept, so a failure has an input to show, save and localize.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..judge.kinds import FailureKind
from ..report.parity import Failure

if TYPE_CHECKING:
    from ..inputs.spec import Recipe
    from ..judge.compare import FailingCase, Verdict
    from ..judge.figures import OutputFigures
    from ..judge.tolerance import TolerancePolicy


@dataclasses.dataclass
class Agreement:
    #: Per output: the lowest top-1 agreement of one input set, and that input set.
    lowest: dict[str, tuple[float, Recipe]] = dataclasses.field(default_factory=dict)

    def observe(self, recipe: Recipe, case: FailingCase, verdict: Verdict, cases: dict[Recipe, FailingCase]) -> None:
        """Keep ``case`` (in ``cases``) where an output's top-1 agreement is the lowest so far."""
        for out in verdict.outputs:
            rate = out.metrics.get("top1")
            if rate is not None and out.rows and rate < self.lowest.get(out.name, (2.0, recipe))[0]:
                self.lowest[out.name] = (rate, recipe)
                cases[recipe] = case

    def failure(
        self, figures: dict[str, OutputFigures], policy: TolerancePolicy, checked: int, cases: dict[Recipe, FailingCase]
    ) -> Failure | None:
        """The first output whose pooled top-1/top-5 agreement is below the variant's threshold."""
        from ..judge import metrics

        for name, merged in figures.items():
            limits = policy.limits(name, "float32") if name in self.lowest else {}
            short = metrics.shortfalls(merged.metrics, limits, ("top1", "top5"))
            if short:
                rate, recipe = self.lowest[name]
                message = (
                    f"output {name!r}: below the variant's thresholds: {', '.join(short)}, pooled over "
                    f"{merged.rows} rows of {checked} input set(s) (top-1 {rate:.3f} on the input shown)"
                )
                shapes = {k: list(v.shape) for k, v in cases[recipe].feed.items()}
                failure = Failure(FailureKind.METRICS, message, recipe.to_dict(), recipe.describe(), shapes, name)
                failure.figures = [merged]
                return failure
        return None
