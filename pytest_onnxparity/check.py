"""The engine: adapter -> ONNX file -> session -> inputs -> compare -> ParityReport.

Framework-free: the adapter runs the model, providers.py opens the session, compare.py judges.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import adapters, inputs, onnx_file, providers
from .compare import Comparison, compare
from .errors import OnnxParityError, OnnxParityUsageError
from .report import ExampleFailure, ParityReport
from .spec import OutputResult, Recipe, TensorSpec

if TYPE_CHECKING:
    import numpy as np

    from .settings import Settings

#: Once a failure is found, hypothesis shrinks it for at most this long.
SHRINK_SECONDS = 10.0


@dataclasses.dataclass
class FailingCase:
    """The failing input set kept in memory for artifacts: inputs and the framework's outputs."""

    feed: dict[str, np.ndarray]
    reference: list[np.ndarray] | None


@dataclasses.dataclass
class Outcome:
    report: ParityReport
    failing_case: FailingCase | None = None
    onnx_path: str | None = None


class _Found(Exception):
    """Raised inside the hypothesis test body so hypothesis shrinks the input that failed."""

    def __init__(self, failure: ExampleFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _Runner:
    """Checks one recipe at a time and accumulates the per-output figures."""

    def __init__(
        self,
        prepared: adapters.PreparedModel,
        session: Any,
        info: onnx_file.OnnxInfo,
        specs: list[TensorSpec],
        dynamic_axes: Mapping[str, Mapping[int, str]],
        atol: Any,
        rtol: Any,
        check_names: bool,
    ) -> None:
        self.prepared, self.session, self.info, self.specs = prepared, session, info, specs
        self.dynamic_axes, self.atol, self.rtol, self.check_names = dynamic_axes, atol, rtol, check_names
        self.outputs = {name: OutputResult(name) for name in prepared.output_names}
        #: Set for providers other than CPU: the same graph on ONNX Runtime's CPU provider.
        self.cpu_session: Any = None
        self.vs_cpu: dict[str, OutputResult] = {}
        self.checked: set[Recipe] = set()
        #: Generated inputs the framework model itself raised on, described.
        self.rejected: list[str] = []
        #: Failing inputs by id() of their ExampleFailure.
        self.cases: dict[int, FailingCase] = {}

    def check(self, recipe: Recipe) -> ExampleFailure | None:
        """Compare on one recipe: None when it passed (or the framework model rejected the input)."""
        feed = inputs.materialize(recipe, self.specs, self.prepared.example)
        shapes = {k: list(v.shape) for k, v in feed.items()}

        def failure(kind: str, message: str, comparison: Comparison | None = None, ref: Any = None) -> ExampleFailure:
            result = ExampleFailure(kind, message, recipe.to_dict(), recipe.describe(), shapes)
            self.cases[id(result)] = FailingCase(feed, ref)
            if comparison is not None:
                result.output = comparison.output
                for out in comparison.outputs:
                    fig = dataclasses.asdict(out)
                    result.worst += [dict(output=out.name, **w) for w in fig.pop("worst")]
                    if out.mismatched or out.name == comparison.output:
                        result.figures[out.name] = fig
            return result

        try:
            reference = self.prepared.run(feed)
        except Exception as exc:
            # Outside what the model accepts (a length past its position table, a value it validates): there is
            # nothing to compare. Skipped and counted; the report warns, --onnx-strict fails.
            self.rejected.append(f"{recipe.describe()}: {type(exc).__name__}: {str(exc)[:300]}")
            return None
        self.checked.add(recipe)
        try:
            got = self.session.run(None, {name: feed[name] for name in self.info.inputs})
        except Exception as exc:
            return failure(
                "onnxruntime-error",
                f"ONNX Runtime failed on an input the {self.prepared.framework} model accepts: "
                f"{type(exc).__name__}: {str(exc)[:800]}. Dynamic axes checked: {dict(self.dynamic_axes)}; "
                f"the ONNX graph declares input dims {self.info.input_dims}. A fixed size where the model "
                "takes any (a batch or length baked in by tracing, a Reshape to a constant shape) breaks here: "
                "re-export with dynamic axes.",
                ref=reference,
            )
        comparison = compare(
            self.prepared.output_names, reference, self.info.outputs, got, self.atol, self.rtol, self.check_names
        )
        _accumulate(self.outputs, comparison)
        if not comparison.passed:
            return failure(comparison.kind or "values", comparison.problem or "", comparison, reference)
        if self.cpu_session is None:
            return None
        # The provider against ONNX Runtime's CPU provider too: separates provider numerics from export bugs.
        on_cpu = self.cpu_session.run(None, {name: feed[name] for name in self.info.inputs})
        versus_cpu = compare(self.info.outputs, on_cpu, self.info.outputs, got, self.atol, self.rtol, False)
        _accumulate(self.vs_cpu, versus_cpu)
        if versus_cpu.passed:
            return None
        return failure(
            "provider-vs-cpu",
            f"the provider's result differs from ONNX Runtime's CPU provider on the same graph: {versus_cpu.problem}",
            versus_cpu,
            reference,
        )


def _accumulate(into: dict[str, OutputResult], comparison: Comparison) -> None:
    for out in comparison.outputs:
        agg = into.setdefault(out.name, OutputResult(out.name))
        agg.max_abs_diff = max(agg.max_abs_diff, out.max_abs_diff)
        agg.max_rel_diff = max(agg.max_rel_diff, out.max_rel_diff)
        agg.tolerance_used = max(agg.tolerance_used, out.tolerance_used)
        agg.mismatched += out.mismatched
        agg.total += out.total
        agg.atol, agg.rtol = out.atol, out.rtol


def _explore(runner: _Runner, specs: list[TensorSpec], settings: Settings) -> ExampleFailure | None:
    """Generated inputs through hypothesis, shrinking the first failure (within SHRINK_SECONDS)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed
    from hypothesis import settings as hypothesis_settings

    found: dict[Recipe, ExampleFailure] = {}
    first_failure_at: list[float] = []

    def body(recipe: Recipe) -> None:
        if recipe in found:
            raise _Found(found[recipe])
        if first_failure_at and time.monotonic() - first_failure_at[0] > SHRINK_SECONDS:
            return  # shrink budget spent: report the smallest failure found so far
        failure = runner.check(recipe)
        if failure is not None:
            found[recipe] = failure
            first_failure_at[:1] = first_failure_at[:1] or [time.monotonic()]
            raise _Found(failure)

    test = given(inputs.recipe_strategy(specs, settings))(body)
    test = hypothesis_settings(
        max_examples=settings.examples,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )(test)
    test = seed(settings.seed)(test)
    try:
        test()
    except _Found as exc:
        return exc.failure
    return None


def _tolerances(settings: Settings, provider: str) -> tuple[Any, Any]:
    """Marker's provider_tolerances > atol/rtol > the provider's defaults > dtype defaults (in compare.py)."""
    override = settings.provider_tolerances.get(provider, {})
    default = providers.PROVIDER_DEFAULT_TOLERANCES.get(provider, {})
    atol = override.get("atol", settings.atol if settings.atol is not None else default.get("atol"))
    rtol = override.get("rtol", settings.rtol if settings.rtol is not None else default.get("rtol"))
    return atol, rtol


def run_parity(
    model: Any,
    example_inputs: Any,
    settings: Settings,
    provider: str,
    workdir: Path,
    nodeid: str = "",
    extra_adapters: Sequence[tuple[str, Callable[[Any], bool], str]] = (),
) -> Outcome:
    """Check ``model`` against its ONNX conversion on ``provider``. Raises OnnxParityError on bad input."""
    prepared = adapters.prepare(model, example_inputs, settings, extra_adapters)
    try:
        return _run(prepared, settings, provider, workdir, nodeid)
    finally:
        prepared.close()


def _run(prepared: adapters.PreparedModel, settings: Settings, provider: str, workdir: Path, nodeid: str) -> Outcome:
    dynamic_axes = inputs.resolve_dynamic_axes(prepared.example, settings, prepared.model_dynamic_axes)
    warnings: list[str] = []
    notes: list[str] = []
    if prepared.source_onnx is not None:
        path, exporter = prepared.source_onnx, "none (the model is an ONNX file)"
        info = onnx_file.inspect(path, user_file=True)
        if provider == "cpu":
            warnings.append(
                "an ONNX file on the CPU provider is compared with itself on the CPU provider: this shows the graph "
                "runs across the inputs, not that its numerics are right (use --onnx-providers=cuda, openvino ...)"
            )
    elif settings.onnx_model is not None:
        path, exporter = settings.onnx_model, "user file (onnx_model=)"
        info = onnx_file.inspect(path, user_file=True)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        path = str(workdir / "model.onnx")
        exported = prepared.export(Path(path), dynamic_axes, settings)
        exporter, notes = exported.exporter, exported.notes
        info = onnx_file.inspect(path, user_file=False)
    if notes:
        warnings.append(
            f"exported with the {exporter} fallback because the preferred exporter failed (see the export notes); "
            "a traced graph may have frozen shapes or branches"
        )
    missing = [name for name in info.inputs if name not in prepared.example]
    if missing:
        raise OnnxParityUsageError(
            f"the ONNX graph takes input(s) {missing} that the example inputs do not provide (they provide "
            f"{list(prepared.example)}); pass input_names=... matching the ONNX graph's inputs {info.inputs}."
        )
    model_order = [name for name in prepared.example if name in info.inputs]
    if model_order != [name for name in info.inputs if name in prepared.example]:
        warnings.append(
            f"the ONNX graph lists its inputs as {info.inputs} but the model takes them as {list(prepared.example)}: "
            "runtimes that feed inputs by position get them swapped (inputs were matched by name here)"
        )
    dropped = [name for name in prepared.example if name not in info.inputs]
    if dropped:
        warnings.append(
            f"the ONNX graph does not take input(s) {dropped}: the exporter dropped them (the model ignores them "
            "for the example), so changing them in production has no effect in ONNX"
        )
    session, placement = providers.open_session(
        path, provider, settings.provider_options.get(provider), profile_dir=None if provider == "cpu" else workdir
    )
    _check_input_types(session, prepared)
    specs = inputs.build_specs(prepared.example, dynamic_axes, settings, prepared.int_high_hints)
    atol, rtol = _tolerances(settings, provider)
    check_names = prepared.output_names_meaningful or (settings.onnx_model is None and prepared.source_onnx is None)
    runner = _Runner(prepared, session, info, specs, dynamic_axes, atol, rtol, check_names)
    reference_device = prepared.place(provider)
    if provider != "cpu" and prepared.source_onnx is None:
        # (For a bare ONNX file the reference already is the CPU provider: no second comparison.)
        runner.cpu_session, _ = providers.open_session(path, "cpu")
    edges = inputs.edge_recipes(specs, settings)
    failure = None
    for recipe in edges:
        failure = runner.check(recipe)
        if recipe is edges[0] and provider != "cpu":
            placement = providers.placement_from_profile(session, provider)
            session, _ = providers.open_session(path, provider, settings.provider_options.get(provider))
            runner.session = session
        if failure is not None:
            break
    generated_before = len(runner.checked)
    if failure is None and settings.examples:
        failure = _explore(runner, specs, settings)
        generated = len(runner.checked) - generated_before
        if failure is None and generated < settings.examples:
            why = (
                f"{len(runner.rejected)} were rejected by the model"
                if runner.rejected
                else "the space of shapes and patterns is small"
            )
            warnings.append(
                f"{generated} generated input set(s) were compared of the {settings.examples} asked ({why})"
            )
    if runner.rejected:
        warnings.append(
            f"the {prepared.framework} model raised on {len(runner.rejected)} generated input set(s), which were "
            f"skipped (first: {runner.rejected[0]}); narrow the inputs with input_ranges, dynamic_axes or batch_sizes"
        )
    if placement.fallback_ops:
        warnings.append(
            f"{sum(placement.fallback_ops.values())} node(s) fell back to CPU: "
            + ", ".join(f"{op} x{n}" for op, n in sorted(placement.fallback_ops.items()))
        )
    versions = prepared.versions()
    versions.update(_runtime_versions())
    report = ParityReport(
        passed=failure is None,
        provider=provider,
        examples=len(runner.checked),
        outputs=list(runner.outputs.values()),
        onnx_path=path,
        framework=prepared.framework,
        exporter=exporter,
        opset=info.opset,
        seed=settings.seed,
        nodeid=nodeid,
        failure=failure,
        warnings=warnings,
        export_notes=notes,
        versions=versions,
        executed_providers=placement.providers,
        node_placement=placement.nodes,
        fallback_nodes=placement.fallback_ops,
        reference=f"{prepared.framework} on {reference_device}",
        provider_options=dict(settings.provider_options.get(provider, {})),
        versus_cpu=list(runner.vs_cpu.values()),
    )
    if failure is not None:
        report.repro = (
            f"pytest {nodeid!r} --onnx-seed={settings.seed} --onnx-providers={provider} (inputs are a pure function "
            "of the seed; --onnx-artifacts=DIR saves them as ONNX test data)"
        )
    return Outcome(report, runner.cases.get(id(failure)) if failure else None, path)


def _check_input_types(session: Any, prepared: adapters.PreparedModel) -> None:
    """The graph must take each input in the model's dtype (a float16 graph fed float32 is an interface change)."""
    import numpy as np

    for graph_input in session.get_inputs():
        example = prepared.example.get(graph_input.name)
        onnx_type = graph_input.type.removeprefix("tensor(").removesuffix(")")
        expected = {"float": "float32", "double": "float64", "bool": "bool"}.get(onnx_type, onnx_type)
        if example is not None and np.dtype(example.dtype).name != expected:
            raise OnnxParityError(
                f"the ONNX graph takes input {graph_input.name!r} as {expected} but the model takes "
                f"{example.dtype}: the conversion changed the model's interface (a float16 conversion without "
                "keep_io_types=True, or an int32/int64 cast?). Convert keeping the model's input types."
            )


def _runtime_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
