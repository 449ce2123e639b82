"""The engine: one parity check, model -> export -> runners -> search -> ParityReport. No pytest.

``pytest_onnxparity.check`` (the Python API) and the fixture both come here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import adapters
from ..export import interface, variants
from ..export.exported import ExportedModel, Exporter, export
from ..inputs import plan as plan_sizes
from ..inputs import recipes as inputs
from ..inputs import spec
from ..judge import tolerance
from ..judge.compare import FailingCase
from ..locate import localize, nonfinite
from ..locate.departure import departure
from ..locate.divergence import Divergence
from ..report.parity import ParityReport
from ..report.timings import Timings
from ..runners import ReferenceMemo
from ..runners.onnxruntime import ignored_settings, require, versions
from ..runners.worker import open_runners
from . import contracts, search, sizes
from .probe import Probe

if TYPE_CHECKING:
    from ..options.settings import CheckOptions
    from ..report.parity import Failure


@dataclasses.dataclass
class CheckResult:
    report: ParityReport
    exported: ExportedModel
    policy: tolerance.TolerancePolicy
    case: FailingCase | None = None
    divergence: Divergence | None = None


def prepare(
    model: Any,
    example_inputs: Any,
    options: CheckOptions,
    extra_adapters: Sequence[tuple[str, Callable[[Any], bool], str]] = (),
) -> adapters.PreparedModel:
    """The reference runner for ``model`` (close it when done: it restores the user's model)."""
    require()
    return adapters.prepare(model, example_inputs, options, extra_adapters)


def run(
    prepared: adapters.PreparedModel,
    options: CheckOptions,
    provider: str,
    workdir: Path,
    nodeid: str = "",
    exporter: Exporter | None = None,
    memo: ReferenceMemo | None = None,
) -> CheckResult:
    """Export (through ``exporter``: the session's cache; by default the export, then ``variant=``'s build),
    compare on ``provider``, report. ``memo`` shares the reference's outputs between a model's checks."""
    axes = spec.resolve_dynamic_axes(prepared.example, options, prepared.model_dynamic_axes)
    exporter = exporter or variants.with_variant(export, variants.to_build(options))
    exported = exporter(prepared, axes, options, workdir)
    checked = variants.check_options(options, exported.variant)
    return _compare(prepared, exported, axes, provider, checked, nodeid, memo, workdir)


def _compare(
    prepared: adapters.PreparedModel,
    exported: ExportedModel,
    axes: Mapping[str, Mapping[int, str]],
    provider: str,
    options: CheckOptions,
    nodeid: str,
    memo: ReferenceMemo | None,
    workdir: Path,
) -> CheckResult:
    info = exported.graph
    matched = interface.match(prepared.example, info, user_file=not exported.names_are_ours)
    policy = tolerance.for_conversion(options, prepared.output_names, exported.variant)
    provider_policy = tolerance.for_provider(options, provider, prepared.output_names, exported.variant)
    device = prepared.place(provider)
    timings = Timings(export=exported.seconds)
    # What a check opens is released when it ends (a garbage collection finds it in cycles only much later).
    with contextlib.ExitStack() as opened:
        with timings.phase("sessions"), variants.crash_named(exported, provider):
            target, cpu = open_runners(exported.path, provider, options, matched.feed_names, prepared.name)
        opened.callback(target.close)
        specs = spec.build_specs(prepared.example, axes, options, prepared.int_high_hints)
        limits = plan_sizes.axis_limits(specs, prepared.sequence_limit, adapters.length_limits(prepared))
        plan = plan_sizes.axis_plan(specs, options, limits)
        probe = Probe.for_check(
            prepared, exported, target, cpu, specs, policy, options, axes, timings, memo, device, provider_policy
        )
        opened.callback(probe.close)
        early = contracts.before_running(probe, info, axes)
        open_axes = limits.open - set(options.axis_sizes)
        found = search.SearchResult(early, 0, {}) if early else search.search(probe, options, plan, open_axes)
        record = probe.record  # what the search collected, handed on as data
        failure = found.failure or record.agreement.failure(record.figures, policy, len(record.checked), record.cases)
        failure = failure or contracts.model_rejects_dynamic_sizes(record, inputs.dim_sizes(specs)[0])
        if failure is not None and options.localize:
            with timings.phase("localize"):
                failure.sizes = sizes.split(probe, failure, plan, options.localize_budget)
        where = _localize(probe, prepared, exported, options, axes, failure, workdir)
        report = ParityReport(
            passed=failure is None,
            provider=provider,
            framework=prepared.name,
            seed=options.seed,
            nodeid=nodeid,
            failure=failure,
            warnings=[
                *exported.warnings,
                *matched.warnings,
                *contracts.declared_output_dims(info, record.shapes),
                *_warnings(probe, found.generated, options.examples, failure is None),
                *_nonfinite_warning(probe, found.nonfinite, exported.path, options.localize),
            ],
            versions={**prepared.versions(), **versions()},
            tolerance_reason="; ".join(
                filter(None, [policy.reason, provider_policy.reason if probe.provider_policy is not None else ""])
            ),
            reference=f"{prepared.name} on {device}",
            reach=search.reach(record, plan, found.skipped, found.ends, limits.source),
            first_divergence=where.to_dict() if where else None,
            **exported.report_fields(),
            **probe.report_fields(),
            **target.report_fields(),
        )
        return CheckResult(report, exported, probe.policy_of(failure), record.case_for(failure), where)


def _localize(
    probe: Probe,
    prepared: adapters.PreparedModel,
    exported: ExportedModel,
    check: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    failure: Failure | None,
    workdir: Path,
) -> Divergence | None:
    """Localize a failure that has a failing input to rerun (values, NaN placement, shape, provider), unless
    ``localize=False``; ``workdir`` is the check's own folder (a fresh export to compare goes there). A step that
    raises keeps what was found before it, with the reason in one note."""
    case = probe.record.case_for(failure)
    if failure is None or case is None or not check.localize or failure.kind not in localize.LOCALIZED:
        return None
    # A conversion failure was found on ONNX Runtime's CPU provider, whatever the item's provider.
    provider = probe.target.provider if failure.verdict == "provider" else "cpu"
    policy = probe.policy_of(failure)
    graph_feed = _graph_feed(probe, case)
    found = Divergence()
    with probe.timings.phase("localize"):
        try:
            if exported.variant is not None and exported.base_path is not None:
                records = adapters.layer_outputs(prepared, case.feed)
                return departure(exported, graph_feed, case.reference or {}, policy, case.context, records)
            localize.localize(found, prepared, exported, provider, check, axes, case, graph_feed, policy, workdir)
        except Exception as exc:  # localizing must never replace the failure it explains: keep what it found
            found.notes.append(f"localization stopped early, shown is what it had: {localize.why(exc)}")
    return found


def _warnings(probe: Probe, generated: int, asked: int, passed: bool) -> list[str]:
    """What makes a passing check weaker than it looks: skipped inputs, fewer examples, CPU fallback."""
    out = []
    if probe.reference.name == probe.target.name:
        out.append(
            "the reference and the target are the same runtime (an ONNX file on the CPU provider): this "
            "shows the graph runs across the inputs, not that its numerics are right (use a provider "
            "other than cpu)"
        )
    # sizes of a walked axis past the model's own limit are not a warning: the reach reports them
    rejected = {r: why for r, why in probe.record.rejected.items() if not inputs.is_walk(r)}
    if rejected:
        recipe, why = next(iter(rejected.items()))
        out.append(
            f"the {probe.reference.name} model raised on {len(rejected)} generated input set(s), which "
            f"were skipped (first: {recipe.describe()}: {why}); narrow the inputs with input_ranges, "
            "dynamic_axes or batch_sizes"
        )
    if passed and asked and generated < asked:
        why = f"{len(rejected)} were rejected by the model" if rejected else "time budget or a small space"
        out.append(f"{generated} generated input set(s) were compared of the {asked} asked ({why})")
    placement = probe.target.placement
    if placement.fallback_ops:
        out.append(
            f"{sum(placement.fallback_ops.values())} node(s) fell back to CPU: "
            + ", ".join(f"{op} x{n}" for op, n in sorted(placement.fallback_ops.items()))
        )
    for name, why in sorted(probe.record.noise_refused.items()):
        out.append(
            f"output {name!r} was judged by the fixed tolerance alone: its reference noise estimate was refused, "
            f"as it does not behave like float32 rounding of one computation ({why}); a float64 path or a nudge "
            "that computes something else cannot widen the tolerance"
        )
    out += [f"ONNX Runtime did not apply a setting: {line}" for line in ignored_settings(probe.target.log)]
    return out + probe.record.dependence.warnings()


def _nonfinite_warning(probe: Probe, failure: Failure | None, path: str, localize_values: bool) -> list[str]:
    """The warning for a divergence the search set aside because only NaN/Inf inputs reveal it (none if none)."""
    case = probe.record.case_for(failure)
    if failure is None or case is None:
        return []
    with probe.timings.phase("localize"):
        return nonfinite.warning(failure, case, _graph_feed(probe, case), path, localize_values)


def _graph_feed(probe: Probe, case: FailingCase) -> dict[str, Any]:
    """A failing case's inputs keyed by the graph's input names (the case keeps the model's)."""
    names = probe.target.feed_names
    return {g: case.feed[k] for g, k in names.items()} if names else dict(case.feed)
