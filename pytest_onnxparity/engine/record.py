"""What running a check's input sets collected: plain data that the search hands on to the contracts, the pooled
agreement, localization and the report (nothing here runs or judges)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..inputs.spec import Recipe
from ..judge.figures import OutputFigures
from .agreement import Agreement
from .context import Dependence

if TYPE_CHECKING:
    from ..judge.compare import FailingCase
    from ..report.parity import Failure


@dataclasses.dataclass
class Record:
    """Every input set a check ran, what the reference did with it, and the figures of both verdicts."""

    #: Input sets compared, in the order they ran.
    checked: list[Recipe] = dataclasses.field(default_factory=list)
    #: Input sets the reference model itself raised on, with the reason (outside what the model accepts).
    rejected: dict[Recipe, str] = dataclasses.field(default_factory=dict)
    #: The inputs, reference outputs and context of each failing input set (artifacts, localization).
    cases: dict[Recipe, FailingCase] = dataclasses.field(default_factory=dict)
    #: Every shape each reference output took (held against the graph's declared output dims).
    shapes: dict[str, set[tuple[int, ...]]] = dataclasses.field(default_factory=dict)
    #: The conversion's figures per output (ONNX Runtime's CPU provider against the reference), merged.
    figures: dict[str, OutputFigures] = dataclasses.field(default_factory=dict)
    #: The provider's figures per output (against the CPU provider), merged; empty for the CPU provider.
    vs_cpu: dict[str, OutputFigures] = dataclasses.field(default_factory=dict)
    #: Top-k agreement of a variant judged by metrics, pooled over input sets.
    agreement: Agreement = dataclasses.field(default_factory=Agreement)
    #: Which outputs depend on the inputs, and whether any tolerance could ever fail.
    dependence: Dependence = dataclasses.field(default_factory=Dependence)
    #: Outputs whose reference noise estimate was refused (not rounding of one computation), with why.
    noise_refused: dict[str, str] = dataclasses.field(default_factory=dict)

    def case_for(self, failure: Failure | None) -> FailingCase | None:
        """The inputs and reference outputs of the input set a failure was found on."""
        return self.cases.get(Recipe.from_dict(failure.recipe)) if failure and failure.recipe else None
