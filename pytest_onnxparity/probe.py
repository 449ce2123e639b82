"""One input set at a time: build it, run the reference and ONNX Runtime, compare, keep the figures.

Framework-free: the runners hide the frameworks, ``compare.py`` judges. Failing input sets are kept
by their recipe so artifacts can be written later.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import context, inputs, localize, spec
from .agreement import Agreement
from .compare import FailingCase, OutputContext, Verdict, compare
from .departure import Fp16Scan
from .errors import ModelRejected
from .figures import OutputFigures
from .report import Failure
from .runners import Deferred
from .runners.worker import Crashed
from .spec import Recipe
from .timing import Timings

if TYPE_CHECKING:
    import numpy as np

    from .adapters import PreparedModel
    from .export import ExportedModel
    from .runners import ReferenceMemo, Runner
    from .runners.onnxruntime import OrtRunner
    from .runners.worker import RemoteRunner
    from .settings import CheckOptions
    from .spec import TensorSpec
    from .tolerance import TolerancePolicy


#: Above this share of the fixed tolerance an input set's noise is measured (healthy checks rarely get there).
NOISE_WORTH_IT = 0.5


@dataclasses.dataclass
class Probe:
    """Compares ``target`` (and, for providers other than CPU, ``cpu``) with ``reference`` on one recipe at a time."""

    reference: Runner
    target: Runner
    cpu: Runner | None
    specs: list[TensorSpec]
    example: Mapping[str, np.ndarray]
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
    dependence: context.Dependence = dataclasses.field(default_factory=context.Dependence)
    timings: Timings = dataclasses.field(default_factory=Timings)
    #: The session's reference outputs, shared by a model's provider items; the scope names the model and what
    #: makes a recipe's inputs (the example's values, the specs). ``cpu_scope`` names ONNX Runtime's CPU outputs of
    #: this graph file, which the CPU item records and the other providers' items compare with (None: not shared).
    memo: ReferenceMemo | None = None
    memo_scope: tuple[Any, ...] = ()
    cpu_scope: tuple[Any, ...] | None = None
    #: This item's target is the CPU provider with no options: its outputs are what ``cpu_scope`` records.
    records_cpu: bool = False
    figures: dict[str, OutputFigures] = dataclasses.field(default_factory=dict)
    vs_cpu: dict[str, OutputFigures] = dataclasses.field(default_factory=dict)
    checked: list[Recipe] = dataclasses.field(default_factory=list)
    #: Recipes the reference model itself raised on, with the reason (outside what the model accepts).
    rejected: dict[Recipe, str] = dataclasses.field(default_factory=dict)
    cases: dict[Recipe, FailingCase] = dataclasses.field(default_factory=dict)
    #: Every shape each reference output took (held against the graph's declared output dims).
    shapes: dict[str, set[tuple[int, ...]]] = dataclasses.field(default_factory=dict)
    #: Top-k agreement of a variant judged by metrics, pooled over input sets.
    agreement: Agreement = dataclasses.field(default_factory=Agreement)
    #: An fp16 variant's float16 intermediate values against the export's, on every input set.
    fp16_scan: Callable[[Mapping[str, np.ndarray]], str | None] | None = None

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
    ) -> Probe:
        """The probe of one check: its runners, inputs, tolerances, and the graph's index outputs."""
        from .runners.worker import open_runner

        info = exported.graph
        sources = info.by_model_names(target.feed_names, prepared.output_names, info.index_sources)
        values = [data for data, _ in sources.values()]

        def opener() -> Runner:
            extra = {"feed_names": target.feed_names, "extra_outputs": values}
            return open_runner(exported.path, target.provider, target.options, **extra)

        feeds = spec.feed_digest(prepared.example, specs, options.mask_holes, getattr(prepared, "special_ids", {}))
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
            special_ids=getattr(prepared, "special_ids", {}),
            declared=info.by_model_names(target.feed_names, prepared.output_names, info.dims()),
            include_padding=options.include_padding,
            index_sources=sources,
            index_runner=Deferred("index values", opener) if sources else None,
            timings=timings,
            memo=memo if exported.key else None,
            memo_scope=(exported.key, device, feeds),
            cpu_scope=("onnxruntime-cpu", exported.path, stat.st_mtime_ns, stat.st_size, feeds),
            records_cpu=target.provider == "cpu" and not target.options,
            fp16_scan=Fp16Scan(exported, target.feed_names) if Fp16Scan.applies(exported) else None,
        )

    def __call__(self, recipe: Recipe) -> Failure | None:
        """Compare on one recipe: None when it passed (or the reference model rejected the input)."""
        timings = self.timings
        with timings.phase("inputs"):
            feed = inputs.materialize(recipe, self.specs, self.example, self.mask_holes, self.special_ids)
        try:
            with timings.phase("reference"):
                reference = self._reference(recipe, feed)
        except ModelRejected as exc:
            self.rejected[recipe] = str(exc)[:300]
            return None
        self.checked.append(recipe)
        for name, value in reference.items():
            self.shapes.setdefault(name, set()).add(tuple(value.shape))
        try:
            with timings.phase("onnxruntime"):
                got = self.target.infer(feed)
        except Crashed:  # not the graph refusing the input: the search fails the item on it
            raise
        except Exception as exc:  # ONNX Runtime raised where the model did not: the graph does not take this input
            message = f"ONNX Runtime failed on an input the {self.reference.name} model accepts: " + (
                f"{type(exc).__name__}: {str(exc)[:800]}. {self.interface}"
            )
            return self._failure(recipe, feed, reference, "onnxruntime-error", message)
        with timings.phase("compare"):
            known = self._context(feed, reference)
            verdict = compare(reference, got, self.policy, self.check_names, known)
        close = max((o.tolerance_used for o in verdict.outputs), default=0.0) > NOISE_WORTH_IT
        if (close or verdict.kind == "values") and self.policy.noise_factor and not self.policy.judged_by_metrics:
            # Only near the fixed tolerance is the reference's own rounding error worth two extra runs.
            with timings.phase("reference noise"):
                for name, level in context.noise(self.reference, feed, reference, self.specs, recipe.seed).items():
                    known[name].noise = level
            with timings.phase("compare"):
                verdict = compare(reference, got, self.policy, self.check_names, known)
        with timings.phase("compare"):
            if not verdict.passed and verdict.kind == "values" and verdict.output in self.index_sources:
                verdict = self._with_ties(feed, reference, got, known)
            _fold(self.figures, verdict)
            self.agreement.observe(recipe, FailingCase(feed, reference, known), verdict, self.cases)
            self.dependence.observe_verdict(reference, verdict, self.policy.noise_factor)
        if not verdict.passed:
            kind = verdict.kind or "values"
            return self._failure(recipe, feed, reference, kind, verdict.problem or "", verdict, known)
        overflow = self.fp16_scan(feed) if self.fp16_scan is not None else None
        if overflow is not None:
            return self._failure(recipe, feed, reference, "nonfinite", overflow, verdict, known)
        if self.cpu is None:
            if self.records_cpu:
                self._cpu_memo(recipe, lambda: got)
            return None
        # The provider against ONNX Runtime's CPU provider too: separates provider numerics from export bugs.
        on_graph = {g: known[r] for r, g in zip(reference, got) if r in known}
        on_cpu = self._cpu_memo(recipe, lambda: self._on_cpu(feed))
        with timings.phase("compare"):
            versus_cpu = compare(on_cpu, got, self.policy, check_names=False, context=on_graph)
            _fold(self.vs_cpu, versus_cpu)
        if versus_cpu.passed:
            return None
        message = (
            f"the provider's result differs from ONNX Runtime's CPU provider on the same graph: {versus_cpu.problem}"
        )
        return self._failure(recipe, feed, reference, "provider-vs-cpu", message, versus_cpu, known)

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
        scan's (the target's is the engine's)."""
        for runner in (self.cpu, self.index_runner, self.fp16_scan):
            getattr(runner, "close", lambda: None)()

    def report_fields(self) -> dict[str, Any]:
        """The figures over every input set compared, under the report's field names."""
        return {
            "examples": len(self.checked),
            "outputs": list(self.figures.values()),
            "versus_cpu": list(self.vs_cpu.values()),
            "timings": self.timings.rounded(),
        }

    def case_for(self, failure: Failure | None) -> FailingCase | None:
        """The inputs and reference outputs of the input set a failure was found on."""
        return self.cases.get(Recipe.from_dict(failure.recipe)) if failure and failure.recipe else None

    def _failure(
        self,
        recipe: Recipe,
        feed: dict[str, np.ndarray],
        reference: dict[str, np.ndarray],
        kind: str,
        message: str,
        verdict: Verdict | None = None,
        known: dict[str, OutputContext] | None = None,
    ) -> Failure:
        self.cases[recipe] = FailingCase(feed, reference, known or {})
        failure = Failure(kind, message, recipe.to_dict(), recipe.describe(), _shapes(feed))
        if verdict is not None:
            failure.output = verdict.output
            failure.figures = [o for o in verdict.outputs if o.mismatched or o.name == verdict.output]
            failure.worst = verdict.worst
        if self.cpu is not None and kind != "provider-vs-cpu":
            failure.cpu_verdict = localize.cpu_verdict(self.cpu, feed, reference, self.policy, self.check_names)
        return failure


def _shapes(feed: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in feed.items()}


def _fold(into: dict[str, OutputFigures], verdict: Verdict) -> None:
    for out in verdict.outputs:
        into.setdefault(out.name, OutputFigures(out.name)).merge(out)
