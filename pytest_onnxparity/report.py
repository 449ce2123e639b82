"""ParityReport: the result of one parity check and its text. No pytest, no frameworks, no numpy."""

from __future__ import annotations

import dataclasses
from typing import Any

from .spec import OutputResult


@dataclasses.dataclass
class ExampleFailure:
    """What went wrong on the input set that exposed a difference."""

    kind: str  # count | names | dtype | shape | nonfinite | values | onnxruntime-error | provider-vs-cpu
    message: str
    recipe: dict[str, Any]
    recipe_text: str
    input_shapes: dict[str, list[int]]
    output: str | None = None
    #: Per-output figures on the failing input: name -> dict(mismatched, total, max/mean abs/rel ...).
    figures: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: Rows of the worst elements: dict(output, index, reference, onnx, abs_diff, allowed).
    worst: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ParityReport:
    """The outcome of one ``onnx_parity(...)`` call."""

    passed: bool
    provider: str
    examples: int
    outputs: list[OutputResult]
    onnx_path: str | None
    framework: str = ""
    exporter: str = ""
    opset: int | None = None
    seed: int = 0
    nodeid: str = ""
    failure: ExampleFailure | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    export_notes: list[str] = dataclasses.field(default_factory=list)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Providers ONNX Runtime actually used, and nodes per provider (from profiling) when known.
    executed_providers: list[str] = dataclasses.field(default_factory=list)
    node_placement: dict[str, int] = dataclasses.field(default_factory=dict)
    fallback_nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: The provider options the session was created with (``--onnx-provider-options``).
    provider_options: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Where the framework's reference ran, e.g. "torch on cuda".
    reference: str = ""
    #: Provider vs ONNX Runtime's CPU provider on the same inputs (empty when the provider is CPU).
    versus_cpu: list[OutputResult] = dataclasses.field(default_factory=list)
    repro: str = ""
    artifacts: str | None = None

    def worst_output(self) -> OutputResult | None:
        """The output closest to (or furthest past) its tolerance."""
        return max(self.outputs, key=lambda o: o.tolerance_used, default=None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def text(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """Top-down: what failed, how much, where, on which input, how to reproduce."""
        head = "ONNX parity PASSED" if self.passed else "ONNX parity FAILED"
        lines = [
            f"{head} on {self.provider} ({self.examples} input set(s) checked; exporter: {self.exporter or 'n/a'})"
        ]
        if self.onnx_path:
            lines.append(f"  ONNX model: {self.onnx_path}")
        failure = self.failure
        if failure is not None:
            lines.append(f"  {failure.kind}: {failure.message}")
            lines.append(f"  on input: {failure.recipe_text}")
            shapes = ", ".join(f"{k}{tuple(v)}" for k, v in failure.input_shapes.items())
            lines.append(f"  input shapes: {shapes}")
            for name, fig in failure.figures.items():
                lines.append(
                    f"  output {name!r}: {fig['mismatched']} of {fig['total']} elements differ; "
                    f"max abs diff {fig['max_abs_diff']:.3g}, mean abs diff {fig['mean_abs_diff']:.3g}, "
                    f"max rel diff {fig['max_rel_diff']:.3g}, mean rel diff {fig['mean_rel_diff']:.3g} "
                    f"(atol {fig['atol']:g}, rtol {fig['rtol']:g})"
                )
            if failure.worst:
                lines.append("  worst elements:")
                lines.append(
                    f"    {'output':<16} {'index':<18} {'reference':>14} {'onnx':>14} {'|diff|':>11} {'allowed':>11}"
                )
                for row in failure.worst:
                    lines.append(
                        f"    {row['output']:<16} {tuple(row['index'])!s:<18} {row['reference']:>14.7g} "
                        f"{row['onnx']:>14.7g} {row['abs_diff']:>11.4g} {row['allowed']:>11.4g}"
                    )
        else:
            for out in self.outputs:
                lines.append(
                    f"  output {out.name!r}: max abs diff {out.max_abs_diff:.3g}, max rel diff {out.max_rel_diff:.3g}, "
                    f"{out.tolerance_used:.1%} of tolerance used (atol {out.atol:g}, rtol {out.rtol:g})"
                )
        for out in self.versus_cpu:
            lines.append(
                f"  vs CPU provider, output {out.name!r}: max abs diff {out.max_abs_diff:.3g}, "
                f"{out.tolerance_used:.1%} of tolerance used"
            )
        if self.reference:
            lines.append(f"  reference: {self.reference}")
        if self.executed_providers:
            lines.append(f"  ONNX Runtime providers: {', '.join(self.executed_providers)}")
        if self.fallback_nodes:
            fb = ", ".join(f"{op} x{n}" for op, n in sorted(self.fallback_nodes.items()))
            lines.append(f"  nodes that fell back to CPU: {fb}")
        for note in self.export_notes:
            lines.append(f"  export: {note}")
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        if self.artifacts:
            lines.append(f"  artifacts: {self.artifacts}")
        if self.repro:
            lines.append(f"  reproduce: {self.repro}")
        return lines
