"""The engine: one parity check, model -> export -> runners -> search -> ParityReport. No pytest.

``pytest_onnxparity.check`` (the Python API) and the fixture both come here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import adapters, contracts, inputs, interface, search, spec, tolerance
from .export import ExportedModel, export
from .probe import FailingCase, Probe
from .report import ParityReport
from .runners.onnxruntime import OrtRunner, require, versions

if TYPE_CHECKING:
    from .settings import CheckOptions

Exporter = Callable[[adapters.PreparedModel, Mapping[str, Mapping[int, str]], "CheckOptions", Path], ExportedModel]


@dataclasses.dataclass
class CheckResult:
    report: ParityReport
    exported: ExportedModel
    policy: tolerance.TolerancePolicy
    case: FailingCase | None = None


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
    exporter: Exporter = export,
) -> CheckResult:
    """Export (through ``exporter``: the session's cache), compare on ``provider``, report."""
    axes = spec.resolve_dynamic_axes(prepared.example, options, prepared.model_dynamic_axes)
    return _compare(prepared, exporter(prepared, axes, options, workdir), axes, provider, options, nodeid)


def _compare(
    prepared: adapters.PreparedModel,
    exported: ExportedModel,
    axes: Mapping[str, Mapping[int, str]],
    provider: str,
    options: CheckOptions,
    nodeid: str,
) -> CheckResult:
    info = exported.graph
    matched = interface.match(prepared.example, info, user_file=not exported.names_are_ours)
    policy = tolerance.for_provider(options, provider, prepared.output_names)
    device = prepared.place(provider)
    target = OrtRunner(
        exported.path,
        provider,
        options.provider_options.get(provider),
        profile=provider != "cpu",
        feed_names=matched.feed_names,
    )
    same = prepared.name == target.name or provider == "cpu"
    cpu = None if same else OrtRunner(exported.path, "cpu", feed_names=matched.feed_names)
    specs = spec.build_specs(prepared.example, axes, options, prepared.int_high_hints)
    plan = inputs.axis_plan(specs, options, inputs.axis_limits(specs, prepared.sequence_limit))
    probe = Probe.for_check(prepared, exported, target, cpu, specs, policy, options, axes)
    early = contracts.before_running(probe, info, axes)
    found = search.SearchResult(early, 0, {}) if early else search.search(probe, options, plan)
    failure = found.failure or contracts.model_rejects_dynamic_sizes(probe, inputs.dim_sizes(specs)[0])
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
            *probe.warnings(found.generated, options.examples, failure is None),
        ],
        versions={**prepared.versions(), **versions()},
        tolerance_reason=policy.reason,
        reference=f"{prepared.name} on {device}",
        reach=search.reach(probe, plan, found.skipped),
        **exported.report_fields(),
        **probe.report_fields(),
        **target.report_fields(),
    )
    return CheckResult(report, exported, policy, probe.case_for(failure))
