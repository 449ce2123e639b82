"""One input set at a time: build it, run the reference and ONNX Runtime, compare, keep the figures.

Framework-free: the runners hide the frameworks, ``compare.py`` judges. Failing input sets are kept
by their recipe so artifacts can be written later.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import adapters
from ..errors import ModelRejected
from ..inputs import recipes as inputs
from ..inputs import spec
from ..inputs.spec import Recipe
from ..judge.compare import FailingCase, OutputContext, Verdict, compare
from ..judge.figures import OutputFigures
from ..judge.kinds import FailureKind
from ..locate.fp16 import Fp16Scan
from ..report.parity import Failure
from ..report.timings import Timings
from ..runners import Deferred
from ..runners.emulation import EMULATED, Emulation
from ..runners.worker import Crashed
from . import context
from .record import Record

if TYPE_CHECKING:
    import numpy as np

    from ..adapters import PreparedModel
    from ..export.exported import ExportedModel
    from ..inputs.spec import TensorSpec
    from ..judge.tolerance import TolerancePolicy
    from ..options.settings import CheckOptions
    from ..runners import ReferenceMemo, Runner
    from ..runners.onnxruntime import OrtRunner
    from ..runners.worker import RemoteRunner


#: Above this share of the fixed tolerance an input set's noise is measured (healthy checks rarely get there).
NOISE_WORTH_IT = 0.5


@dataclasses.dataclass
class Probe:
    """Compares ``target`` (and, for providers other than CPU, ``cpu``) with ``reference`` on one recipe at a time."""

    reference: Runner
    target: OrtRunner | RemoteRunner
    cpu: Runner | None
    specs: list[TensorSpec]
    example: Mapping[str, np.ndarray]
    #: The conversion's tolerances (ONNX Runtime's CPU provider against the reference).
    policy: TolerancePolicy
    check_names: bool
    #: Appended to an ONNX Runtime error: what the graph declares, what was fed.
    interface: str = ""
    mask_holes: bool = False
    include_padding: bool = False
    #: The model's pad / bos / eos token ids (placed as a tokenizer places them), where it has them.
    special_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    #: The graph's declared dims, by the model's input and output names (which outputs carry a mask's axes).
    declared: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    #: Index outputs (by the reference's names): (the graph value they index, axis), and a runner that also
    #: returns those values (opened on the first index mismatch: ties are rare).
    index_sources: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    index_runner: Deferred | None = None
    timings: Timings = dataclasses.field(default_factory=Timings)
    #: The session's reference outputs, shared by a model's provider items; the scope names the model and what
    #: makes a recipe's inputs (the example's values, the specs). ``cpu_scope`` names ONNX Runtime's CPU outputs of
    #: this graph file, which the CPU item records and the other providers' items compare with (None: not shared).
    memo: ReferenceMemo | None = None
    memo_scope: tuple[Any, ...] = ()
    cpu_scope: tuple[Any, ...] | None = None
    #: This item's target is the CPU provider with no options: its outputs are what ``cpu_scope`` records.
    records_cpu: bool = False
    #: What the input sets run so far collected (plain data the search hands on).
    record: Record = dataclasses.field(default_factory=Record)
    #: An fp16 variant's float16 intermediate values against the export's, on every input set.
    fp16_scan: Fp16Scan | None = None
    #: The provider's own allowance against the CPU provider (None: the target is the CPU provider), and its
    #: reduced precision emulated on the CPU (None: it computes in float32).
    provider_policy: TolerancePolicy | None = None
    emulation: Emulation | None = None

    @classmethod
    def for_check(
        cls,
        prepared: PreparedModel,
        exported: ExportedModel,
        target: OrtRunner | RemoteRunner,
        cpu: Runner | None,
        specs: list[TensorSpec],
        policy: TolerancePolicy,
        options: CheckOptions,
        axes: Mapping[str, Mapping[int, str]],
        timings: Timings,
        memo: ReferenceMemo | None = None,
        device: str = "cpu",
        provider_policy: TolerancePolicy | None = None,
    ) -> Probe:
        """The probe of one check: its runners, inputs, tolerances, and the graph's index outputs."""
        from ..runners.worker import open_runner

        info = exported.graph
        sources = info.by_model_names(target.feed_names, prepared.output_names, info.index_sources)
        values = [data for data, _ in sources.values()]

        def index_runner() -> Runner:  # on the CPU provider: ties are the conversion's to accept
            return open_runner(exported.path, "cpu", feed_names=target.feed_names, extra_outputs=values)

        reduced = target.precision.name if cpu is not None and target.precision.name in EMULATED else None

        special = adapters.special_ids(prepared)
        feeds = spec.feed_digest(prepared.example, specs, options.mask_holes, special)
        stat = os.stat(exported.path)
        return cls(
            prepared,
            target,
            cpu,
            specs,
            prepared.example,
            policy,
            check_names=prepared.output_names_meaningful or exported.names_are_ours,
            interface=f"Dynamic axes checked: {dict(axes)}; the ONNX graph declares input dims {info.input_dims}.",
            mask_holes=options.mask_holes,
            special_ids=special,
            declared=info.by_model_names(target.feed_names, prepared.output_names, info.dims()),
            include_padding=options.include_padding,
            index_sources=sources,
            index_runner=Deferred("index values", index_runner) if sources else None,
            timings=timings,
            memo=memo if exported.key else None,
            memo_scope=(exported.key, device, feeds),
            cpu_scope=("onnxruntime-cpu", exported.path, stat.st_mtime_ns, stat.st_size, feeds),
            records_cpu=target.provider == "cpu" and not target.options,
            fp16_scan=Fp16Scan(exported, target.feed_names) if Fp16Scan.applies(exported) else None,
            provider_policy=provider_policy if cpu is not None else None,
            emulation=Emulation(exported.path, reduced, target.feed_names) if reduced else None,
        )

    def __call__(self, recipe: Recipe) -> Failure | None:
        """Compare on one recipe: None when it passed (or the reference model rejected the input).

        Two verdicts: the *conversion* (ONNX Runtime's CPU provider on the graph against the reference, by the
        float32 rule, whatever the item's provider) and, for a provider other than CPU, the *provider* (its
        outputs against the CPU provider's on the same inputs, by what its precision explains)."""
        timings = self.timings
        with timings.phase("inputs"):
            feed = inputs.materialize(recipe, self.specs, self.example, self.mask_holes, self.special_ids)
        try:
            with timings.phase("reference"):
                reference = self._reference(recipe, feed)
        except ModelRejected as exc:
            self.record.rejected[recipe] = str(exc)[:300]
            return None
        self.record.checked.append(recipe)
        for name, value in reference.items():
            self.record.shapes.setdefault(name, set()).add(tuple(value.shape))
        try:
            on_cpu = self._converted(recipe, feed)
        except Crashed:  # not the graph refusing the input: the search fails the item on it
            raise
        except Exception as exc:  # ONNX Runtime raised where the model did not: the graph does not take this input
            message = f"ONNX Runtime failed on an input the {self.reference.name} model accepts: " + (
                f"{type(exc).__name__}: {str(exc)[:800]}. {self.interface}"
            )
            return self._failure(recipe, feed, reference, FailureKind.ONNXRUNTIME_ERROR, message)
        verdict, known = self._conversion(recipe, feed, reference, on_cpu)
        if not verdict.passed:
            kind = verdict.kind or FailureKind.VALUES
            return self._failure(recipe, feed, reference, kind, verdict.problem or "", verdict, known)
        overflow = self.fp16_scan(feed) if self.fp16_scan is not None else None
        if overflow is not None:
            return self._failure(recipe, feed, reference, FailureKind.NONFINITE, overflow, verdict, known)
        if self.cpu is None:
            return None
        try:
            with timings.phase("onnxruntime"):
                got = self.target.infer(feed)
        except Crashed:
            raise
        except Exception as exc:
            message = (
                f"the provider failed on an input ONNX Runtime's CPU provider runs: {type(exc).__name__}: "
                f"{str(exc)[:800]}. {self.interface}"
            )
            return self._failure(recipe, feed, reference, FailureKind.ONNXRUNTIME_ERROR, message, judged="provider")
        versus_cpu = self._provider(recipe, feed, reference, on_cpu, got, known)
        if versus_cpu.passed:
            return None
        message = (
            f"the provider's result differs from ONNX Runtime's CPU provider on the same graph beyond what its "
            f"precision explains: {versus_cpu.problem}"
        )
        if (
            versus_cpu.kind == FailureKind.NONFINITE
            and self.emulation is not None
            and self.emulation.overflows(feed, on_cpu)
        ):
            reduced = self.emulation.precision
            message += (
                f" ({reduced}'s range is exceeded on this input: the graph computed in {reduced} on the CPU overflows "
                f"too, as a {reduced} device does; narrow input_ranges or run this provider in float32)"
            )
        kind = versus_cpu.kind or FailureKind.VALUES
        return self._failure(recipe, feed, reference, kind, message, versus_cpu, known, "provider")

    def _converted(self, recipe: Recipe, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ONNX Runtime's CPU provider on this graph: the CPU item runs (and records) it as its target; another
        provider's item takes what the CPU item recorded, or runs it itself (a provider-only run)."""
        if self.cpu is not None:
            return self._cpu_memo(recipe, lambda: self._on_cpu(feed))
        with self.timings.phase("onnxruntime"):
            got = self.target.infer(feed)
        return self._cpu_memo(recipe, lambda: got) if self.records_cpu else got

    def _conversion(
        self, recipe: Recipe, feed: dict[str, np.ndarray], reference: dict[str, np.ndarray], on_cpu: dict[str, Any]
    ) -> tuple[Verdict, dict[str, OutputContext]]:
        """The conversion's verdict on one input set, by the float32 rule (noise-aware), and what it knew."""
        timings = self.timings
        with timings.phase("compare"):
            known = self._context(feed, reference)
            verdict = compare(reference, on_cpu, self.policy, self.check_names, known)
        close = verdict.kind is None and max((o.tolerance_used for o in verdict.outputs), default=0.0) > NOISE_WORTH_IT
        if close or verdict.kind == FailureKind.VALUES:
            self._measure_noise(recipe, feed, reference, known)
            with timings.phase("compare"):
                verdict = compare(reference, on_cpu, self.policy, self.check_names, known)
        with timings.phase("compare"):
            if not verdict.passed and verdict.kind == FailureKind.VALUES and verdict.output in self.index_sources:
                verdict = self._with_ties(feed, reference, on_cpu, known)
            if recipe.pattern != inputs.NONFINITE:  # NaN/Inf say nothing of magnitudes or of what varies
                _fold(self.record.figures, verdict)
                self.record.agreement.observe(recipe, FailingCase(feed, reference, known), verdict, self.record.cases)
                self.record.dependence.observe_verdict(reference, verdict, self.policy.noise_factor)
        return verdict, known

    def _measure_noise(
        self, recipe: Recipe, feed: dict[str, np.ndarray], reference: dict[str, np.ndarray], known: dict[str, Any]
    ) -> None:
        """The reference's own rounding error (a float64 run, a 1-ulp perturbation), once per input set and model:
        only near the fixed tolerance is it worth the two extra runs."""
        if not self.policy.noise_factor or self.policy.judged_by_metrics:
            return
        if any(ctx.noise is not None for ctx in known.values()):
            return

        def measured() -> tuple[dict[str, np.ndarray], dict[str, str]]:
            refused: dict[str, str] = {}
            return context.noise(self.reference, feed, reference, self.specs, recipe.seed, refused), refused

        with self.timings.phase("reference noise"):
            # the model's CPU item measured it on the same input set: another provider's item reuses it
            levels, refused = self.memo.get((*self.memo_scope, "noise", recipe), measured) if self.memo else measured()
            if recipe.pattern != inputs.NONFINITE:  # NaN/Inf inputs move NaN/Inf around: no estimate, no warning
                for name, why in refused.items():
                    self.record.noise_refused.setdefault(name, why)
            for name, level in levels.items():
                known[name].noise = level

    def _provider(
        self,
        recipe: Recipe,
        feed: dict[str, np.ndarray],
        reference: dict[str, np.ndarray],
        on_cpu: dict[str, np.ndarray],
        got: dict[str, np.ndarray],
        known: dict[str, OutputContext],
    ) -> Verdict:
        """The provider's verdict on one input set: against the CPU provider's outputs, within a floor and a factor
        of what its precision was measured to move each element (a float32 provider: the reference's own noise)."""
        import numpy as np

        policy = self.provider_policy or self.policy
        names = dict(zip(got, reference))  # graph output -> the reference's name
        deviation: dict[str, np.ndarray] = {}

        def judged() -> Verdict:
            on_graph = {g: dataclasses.replace(known[r]) for g, r in names.items() if r in known}
            for name, gap in deviation.items():
                ctx = on_graph.setdefault(name, OutputContext())
                ctx.noise = gap if ctx.noise is None else np.fmax(gap, ctx.noise)
            return compare(on_cpu, got, policy, check_names=False, context=on_graph)

        with self.timings.phase("compare"):
            verdict = judged()
        if max((o.tolerance_used for o in verdict.outputs), default=0.0) > NOISE_WORTH_IT and policy.noise_factor:
            if self.emulation is not None:
                with self.timings.phase("provider noise"):
                    deviation = self._emulated(recipe, feed, on_cpu)
            else:
                self._measure_noise(recipe, feed, reference, known)
            with self.timings.phase("compare"):
                verdict = judged()
        if recipe.pattern != inputs.NONFINITE:  # NaN/Inf say nothing of magnitudes
            _fold(self.record.vs_cpu, verdict)
        return verdict

    def _emulated(
        self, recipe: Recipe, feed: dict[str, np.ndarray], on_cpu: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        emulation = self.emulation
        assert emulation is not None
        if self.memo is None or self.cpu_scope is None:
            return emulation.deviation(feed, on_cpu, recipe.seed)
        key = (*self.cpu_scope, emulation.precision, recipe)
        return self.memo.get(key, lambda: emulation.deviation(feed, on_cpu, recipe.seed))

    def _cpu_memo(self, recipe: Recipe, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if self.memo is None or self.cpu_scope is None:
            return compute()
        return self.memo.get((*self.cpu_scope, recipe), compute)

    def _on_cpu(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ONNX Runtime's CPU provider on ``feed``; its session is opened on the first input set the CPU item of
        this model did not already run (with a CPU item before it, never)."""
        runner = self.cpu
        assert runner is not None
        if isinstance(runner, Deferred):
            with self.timings.phase("sessions"):
                runner = runner.opened()
        with self.timings.phase("onnxruntime"):
            return runner.infer(feed)

    def _reference(self, recipe: Recipe, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.memo is None:
            return self.reference.infer(feed)
        return self.memo.get((*self.memo_scope, recipe), lambda: self.reference.infer(feed))

    def reference_on(self, recipe: Recipe) -> dict[str, np.ndarray]:
        """The reference's outputs on ``recipe``, memoized like the search's (ModelRejected where the model raises)."""
        feed = inputs.materialize(recipe, self.specs, self.example, self.mask_holes, self.special_ids)
        with self.timings.phase("reference"):
            return self._reference(recipe, feed)

    def reference_known(self, recipe: Recipe) -> bool:
        """An earlier item of this model (another provider, a variant) already ran the reference on ``recipe``."""
        return self.memo is not None and (*self.memo_scope, recipe) in self.memo

    def _context(self, feed: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, OutputContext]:
        pads = {} if self.include_padding else context.padding(feed, self.specs, reference, self.declared)
        return {name: OutputContext(exclude=pads.get(name)) for name in reference}

    def _with_ties(
        self,
        feed: dict[str, np.ndarray],
        reference: dict[str, np.ndarray],
        got: dict[str, np.ndarray],
        known: dict[str, OutputContext],
    ) -> Verdict:
        """The comparison again, with the values each index output selects (an index of an equal value is a tie)."""
        if self.index_runner is None:
            return compare(reference, got, self.policy, self.check_names, known)
        values = self.index_runner.infer(feed)
        for name, (data, axis) in self.index_sources.items():
            known[name].index_data = (values[data], axis)
        return compare(reference, got, self.policy, self.check_names, known)

    def close(self) -> None:
        """Release the sessions this probe opened: the CPU's and the index values' (opened on first use), the fp16
        scan's and the emulation's (the target's is the engine's)."""
        for runner in (self.cpu, self.index_runner, self.fp16_scan, self.emulation):
            if runner is not None:
                runner.close()

    def report_fields(self) -> dict[str, Any]:
        """The figures over every input set compared, under the report's field names."""
        return {
            "examples": len(self.record.checked),
            "outputs": list(self.record.figures.values()),
            "versus_cpu": list(self.record.vs_cpu.values()),
            "provider_allowance": self.provider_allowance(),
            "timings": self.timings.rounded(),
        }

    def provider_allowance(self) -> str:
        """What the provider's verdict allowed, and what was measured for it ("" for the CPU provider)."""
        policy = self.provider_policy
        if self.cpu is None or policy is None:
            return ""
        if self.emulation is None:
            return (
                f"{policy.noise_factor:g} x the reference's own float32 rounding error (a float64 run, a 1-ulp "
                "perturbation) where the fixed floor is more than half used"
            )
        return (
            f"{policy.noise_factor:g} x the deviation of {self.emulation.describe()} from the float32 CPU run, "
            "measured element by element on each input set where the floor is more than half used"
        )

    def policy_of(self, failure: Failure | None) -> TolerancePolicy:
        """The tolerances the verdict that failed was judged by (the conversion's when none failed)."""
        if failure is not None and failure.verdict == "provider" and self.provider_policy is not None:
            return self.provider_policy
        return self.policy

    def _failure(
        self,
        recipe: Recipe,
        feed: dict[str, np.ndarray],
        reference: dict[str, np.ndarray],
        kind: FailureKind,
        message: str,
        verdict: Verdict | None = None,
        known: dict[str, OutputContext] | None = None,
        judged: str = "conversion",
    ) -> Failure:
        self.record.cases[recipe] = FailingCase(feed, reference, known or {})
        shapes = {name: list(value.shape) for name, value in feed.items()}
        failure = Failure(kind, message, recipe.to_dict(), recipe.describe(), shapes, verdict=judged)
        if verdict is not None:
            failure.output = verdict.output
            failure.figures = [o for o in verdict.outputs if o.mismatched or o.name == verdict.output]
            failure.worst = verdict.worst
        return failure


def _fold(into: dict[str, OutputFigures], verdict: Verdict) -> None:
    for out in verdict.outputs:
        into.setdefault(out.name, OutputFigures(out.name)).merge(out)
