"""The engine: one parity check, model -> export -> runners -> search -> ParityReport. No pytest.

``pytest_onnxparity.check`` (the Python API) and the fixture both come here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import adapters, context, contracts, inputs, interface, localize, search, spec, tolerance, variants
from .compare import FailingCase
from .export import ExportedModel, export
from .probe import Probe
from .report import ParityReport
from .runners import ReferenceMemo
from .runners.onnxruntime import require, versions
from .runners.worker import open_runners
from .timing import Timings

if TYPE_CHECKING:
    from .settings import CheckOptions

Exporter = Callable[[adapters.PreparedModel, Mapping[str, Mapping[int, str]], "CheckOptions", Path], ExportedModel]


@dataclasses.dataclass
class CheckResult:
    report: ParityReport
    exported: ExportedModel
    policy: tolerance.TolerancePolicy
    case: FailingCase | None = None
    divergence: localize.Divergence | None = None


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
    return _compare(prepared, exported, axes, provider, variants.check_options(options, exported.variant), nodeid, memo)


def _compare(
    prepared: adapters.PreparedModel,
    exported: ExportedModel,
    axes: Mapping[str, Mapping[int, str]],
    provider: str,
    options: CheckOptions,
    nodeid: str,
    memo: ReferenceMemo | None,
) -> CheckResult:
    info = exported.graph
    matched = interface.match(prepared.example, info, user_file=not exported.names_are_ours)
    policy = tolerance.for_provider(options, provider, prepared.output_names, exported.variant)
    device = prepared.place(provider)
    timings = Timings(export=exported.seconds)
    # What a check opens is released when it ends (a garbage collection finds it in cycles only much later).
    with contextlib.ExitStack() as opened:
        with timings.phase("sessions"):
            with variants.crash_named(exported, provider):
                target, cpu = open_runners(exported.path, provider, options, matched.feed_names, prepared.name)
            opened.callback(target.close)
        specs = spec.build_specs(prepared.example, axes, options, prepared.int_high_hints)
        plan = inputs.axis_plan(specs, options, inputs.axis_limits(specs, prepared.sequence_limit))
        probe = Probe.for_check(prepared, exported, target, cpu, specs, policy, options, axes, timings, memo, device)
        opened.callback(probe.close)
        early = contracts.before_running(probe, info, axes)
        found = search.SearchResult(early, 0, {}) if early else search.search(probe, options, plan)
        failure = found.failure or probe.agreement.failure(probe.figures, policy, len(probe.checked), probe.cases)
        failure = failure or contracts.model_rejects_dynamic_sizes(probe, inputs.dim_sizes(specs)[0])
        where = localize.for_failure(probe, prepared, exported, options, axes, failure)
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
                *contracts.declared_output_dims(info, probe.shapes),
                *context.warnings(probe, found.generated, options.examples, failure is None),
            ],
            versions={**prepared.versions(), **versions()},
            tolerance_reason=policy.reason,
            reference=f"{prepared.name} on {device}",
            reach=search.reach(probe, plan, found.skipped),
            first_divergence=where.to_dict() if where else None,
            **exported.report_fields(),
            **probe.report_fields(),
            **target.report_fields(),
        )
        return CheckResult(report, exported, policy, probe.case_for(failure), where)
