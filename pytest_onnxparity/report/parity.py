"""ParityReport: the result of one parity check and its text. No pytest, no frameworks, no numpy."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..judge.figures import OutputFigures
from ..judge.kinds import FailureKind


@dataclasses.dataclass
class Failure:
    """What went wrong on the input set that exposed a difference."""

    # count | names | dtype | shape | nonfinite | values | onnxruntime-error | metrics | ...
    kind: FailureKind
    message: str
    recipe: dict[str, Any]
    recipe_text: str
    input_shapes: dict[str, list[int]]
    output: str | None = None
    #: Per-output figures on the failing input (the outputs that differ, and the one that failed).
    figures: list[OutputFigures] = dataclasses.field(default_factory=list)
    #: The worst elements: dict(output, index, reference, onnx, abs_diff, allowed).
    worst: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Which verdict failed: "conversion" (ONNX Runtime's CPU provider on the graph against the model, whatever the
    #: item's provider) or "provider" (the provider against the CPU provider, beyond what its precision explains).
    verdict: str = "conversion"
    #: A failure that depends on a dynamic size: per axis, the sizes checked by outcome (matches, wrong values,
    #: ONNX Runtime error).
    sizes: dict[str, dict[str, list[int]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ParityReport:
    """The outcome of one parity check (``onnx_parity(...)`` or :func:`pytest_onnxparity.check`)."""

    passed: bool
    provider: str
    examples: int
    outputs: list[OutputFigures]
    onnx_path: str | None
    framework: str = ""
    exporter: str = ""
    opset: int | None = None
    seed: int = 0
    nodeid: str = ""
    failure: Failure | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    export_notes: list[str] = dataclasses.field(default_factory=list)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Providers ONNX Runtime actually used, and nodes per provider (from profiling) when known.
    executed_providers: list[str] = dataclasses.field(default_factory=list)
    node_placement: dict[str, int] = dataclasses.field(default_factory=dict)
    fallback_nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: The provider options the session was created with (``--onnx-provider-options``).
    provider_options: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The arithmetic the provider ran in, e.g. "f32 (float32 kernels)" or "bf16 (...)".
    precision: str = ""
    #: Why the tolerances differ from the dtype defaults ("" when they do not).
    tolerance_reason: str = ""
    #: What ONNX Runtime and the provider logged while the session was created and run.
    provider_log: list[str] = dataclasses.field(default_factory=list)
    #: Where the reference ran, e.g. "torch on cuda".
    reference: str = ""
    #: Provider vs ONNX Runtime's CPU provider on the same inputs (empty when the provider is CPU): the provider's
    #: verdict; ``outputs`` are the conversion's (the CPU provider's outputs against the reference).
    versus_cpu: list[OutputFigures] = dataclasses.field(default_factory=list)
    #: What the provider's verdict allowed above its floor, and what was measured for it.
    provider_allowance: str = ""
    #: Where the ONNX file came from: exported (this check), reused (earlier in the session), cached
    #: (--onnx-cache-dir), user file (onnx_model=), model file (the model is an .onnx).
    export_origin: str = ""
    #: Seconds per phase: export, sessions, inputs, reference, reference noise, onnxruntime, compare, search.
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    #: On a failure: the first divergent module/layer and ONNX node, the stage that broke it, how an
    #: artifact differs from a fresh export (``localize.Divergence.to_dict()``; ``line`` is its summary).
    first_divergence: dict[str, Any] | None = None
    #: Per dynamic axis: sizes planned and checked, the largest reached, sizes skipped and why.
    reach: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: The variant checked (optimized, simplified, fp16, int8-dynamic, int8-static), None for the export itself.
    variant: str | None = None
    onnx_size_bytes: int | None = None
    repro: str = ""
    artifacts: str | None = None

    def worst_output(self) -> OutputFigures | None:
        """The output closest to (or furthest past) its tolerance."""
        return max(self.outputs, key=lambda o: o.tolerance_used, default=None)

    @property
    def conversion_margin(self) -> float:
        """Share of the conversion's tolerance used (the CPU provider's outputs against the reference)."""
        return max((o.tolerance_used for o in self.outputs), default=0.0)

    @property
    def provider_margin(self) -> float | None:
        """Share of the provider's allowance used against the CPU provider (None for the CPU provider)."""
        return max((o.tolerance_used for o in self.versus_cpu), default=0.0) if self.versus_cpu else None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(conversion_margin=self.conversion_margin, provider_margin=self.provider_margin)
        out["outputs"] = [o.to_dict() for o in self.outputs]
        out["versus_cpu"] = [o.to_dict() for o in self.versus_cpu]
        if self.failure is not None:
            out["failure"]["figures"] = [o.to_dict() for o in self.failure.figures]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """Top-down: what failed, how much, where, on which input, how to reproduce."""
        head = "ONNX parity PASSED" if self.passed else "ONNX parity FAILED"
        on = self.provider + (f", {self.variant} variant" if self.variant else "")
        lines = [f"{head} on {on} ({self.examples} input set(s) checked; exporter: {self.exporter or 'n/a'})"]
        if self.provider_margin is not None:
            lines.append(
                f"  margins: conversion {self.conversion_margin:.1%} of its tolerance used (ONNX Runtime's CPU "
                f"provider vs {self.framework or 'the model'}), provider {self.provider_margin:.1%} of its allowance "
                "used (vs the CPU provider)"
            )
        if self.onnx_path:
            size = f" ({self.onnx_size_bytes / 1e6:.2f} MB)" if self.onnx_size_bytes else ""
            lines.append(f"  ONNX model: {self.onnx_path}{size}")
        if self.failure is not None:
            failure = _failure_lines(self.failure)
            lines += failure[:1] + (_divergence_lines(self.first_divergence) if self.first_divergence else [])
            lines += failure[1:]
        else:
            for out in self.outputs:
                lines.append(
                    f"  output {out.name!r}: max abs diff {out.max_abs_diff:.3g}, max rel diff {out.max_rel_diff:.3g}, "
                    + _allowance(out)
                    + _metrics_text(out)
                )
        for out in self.versus_cpu:
            measured = f"; measured deviation up to {out.noise:.3g}" if out.noise else ""
            lines.append(
                f"  vs CPU provider, output {out.name!r}: max abs diff {out.max_abs_diff:.3g}, "
                f"{out.tolerance_used:.1%} of the provider's allowance used (floor atol {out.atol:.3g}, rtol "
                f"{out.rtol:.3g}{measured}; at the peak the {'measured deviation' if out.rule == 'noise' else 'floor'} "
                "set the allowance)"
            )
        facts = [
            ("reference", self.reference),
            ("precision", self.precision),
            ("tolerance", self.tolerance_reason),
            ("provider allowance", self.provider_allowance),
            ("ONNX Runtime providers", ", ".join(self.executed_providers)),
            ("node placement", ", ".join(f"{p} {n}" for p, n in self.node_placement.items())),
            ("nodes that fell back to CPU", ", ".join(f"{op} x{n}" for op, n in sorted(self.fallback_nodes.items()))),
        ]
        lines += [f"  {label}: {value}" for label, value in facts if value]
        lines += [f"  reach: {reach_text(self.reach)}"] if self.reach else []
        lines += [f"  export: {note}" for note in self.export_notes]
        lines += [f"  provider log: {entry}" for entry in self.provider_log]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        if self.artifacts:
            lines.append(f"  artifacts: {self.artifacts}")
        if self.repro:
            lines.append(f"  reproduce: {self.repro}")
        return lines


def _divergence_lines(found: dict[str, Any]) -> list[str]:
    lines = [f"  {found['line']}"]
    lines += [f"    then {step}" for step in found.get("after", [])]
    lines += [f"    placement: {found['placement']}"] if found.get("placement") else []
    lines += [f"    artifact vs a fresh export: {d}" for d in found.get("differences", [])[1:5]]
    lines += [f"    note: {note}" for note in found.get("notes", [])]
    return lines


def _failure_lines(failure: Failure) -> list[str]:
    lines = [f"  {failure.verdict}: {failure.kind}: {failure.message}", f"  on input: {failure.recipe_text}"]
    shapes = ", ".join(f"{k}{tuple(v)}" for k, v in failure.input_shapes.items())
    lines.append(f"  input shapes: {shapes}")
    lines += _sizes_lines(failure.sizes, failure.recipe.get("dims", {}))
    for fig in failure.figures:
        lines.append(
            f"  output {fig.name!r}: {fig.mismatched} of {fig.total} elements differ; max abs diff "
            f"{fig.max_abs_diff:.3g}, mean abs diff {fig.mean_abs_diff:.3g}, max rel diff {fig.max_rel_diff:.3g}, "
            f"mean rel diff {fig.mean_rel_diff:.3g} (atol {fig.atol:g}, rtol {fig.rtol:g})" + _metrics_text(fig)
        )
    if failure.worst:
        lines.append("  worst elements:")
        lines.append(f"    {'output':<16} {'index':<18} {'reference':>14} {'onnx':>14} {'|diff|':>11} {'allowed':>11}")
        for row in failure.worst:
            lines.append(
                f"    {row['output']:<16} {tuple(row['index'])!s:<18} {row['reference']:>14.7g} "
                f"{row['onnx']:>14.7g} {row['abs_diff']:>11.4g} {row['allowed']:>11.4g}"
            )
    return lines


def _sizes_lines(split: dict[str, dict[str, list[int]]], failing: dict[str, int]) -> list[str]:
    """``sizes on height (batch=2, width=8): matches 8; wrong values 3, 5, 17; ONNX Runtime error 1``."""
    out = []
    for label, buckets in split.items():
        varied = label.split("=")
        fixed = ", ".join(f"{d}={n}" for d, n in failing.items() if d not in varied)
        text = "; ".join(f"{bucket} {', '.join(map(str, sizes))}" for bucket, sizes in buckets.items())
        out.append(f"  sizes on {label}{f' ({fixed})' if fixed else ''}: {text}")
    return out


def _allowance(figures: OutputFigures) -> str:
    """``12.0% of tolerance used (atol 1e-06, rtol 1e-05)``, or of the metric thresholds that judge it."""
    if figures.limits:
        held = ", ".join(f"{k} >= {v:g}" for k, v in figures.limits.items())
        return f"{figures.tolerance_used:.1%} of the metric thresholds used ({held})"
    return f"{figures.tolerance_used:.1%} of tolerance used (atol {figures.atol:g}, rtol {figures.rtol:g})"


def _metrics_text(figures: OutputFigures) -> str:
    """``; cosine 0.99987, SNR 38.1 dB, top-1 1.000`` for a variant's output (every metric, whatever decides)."""
    from ..judge.metrics import text

    return f"; {text(figures.metrics)}" if figures.metrics else ""


def reach_text(reach: dict[str, dict[str, Any]]) -> str:
    """``batch 1..17 (3 sizes); seq 1..64 (6 sizes), 128 skipped: time budget``."""
    parts = []
    for dim, figures in reach.items():
        checked = figures["checked"]
        text = f"{dim} {min(checked)}..{max(checked)} ({len(checked)} sizes)" if checked else f"{dim} none checked"
        text += f", bounded by {figures['bound']}" if figures.get("bound") else ""
        skipped = figures["skipped"]
        if skipped:
            text += ", skipped " + ", ".join(f"{size} ({why})" for size, why in list(skipped.items())[:3])
            text += f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        parts.append(text)
    return "; ".join(parts)


class ParityMismatch(AssertionError):
    """The ONNX model's outputs differ from the framework's; ``report`` holds the details."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(report.text())
        self.report = report
