"""The search for an input the conversion gets wrong: fixed edge cases, then hypothesis, within budgets.

Whatever hypothesis does once a failure is found (shrinking, replaying, a FlakyFailure when a provider
is not deterministic), the result is the parity failure found, never hypothesis's own exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityUsageError
from ..inputs import plan as sizes
from ..inputs import recipes as inputs
from ..inputs.spec import Recipe
from ..judge.kinds import FailureKind
from ..options.settings import MAX_ELEMENTS
from ..options.validate import NONFINITE_FAILS
from ..runners import watchdog

if TYPE_CHECKING:
    from ..options.settings import CheckOptions
    from ..report.parity import Failure
    from .probe import Probe
    from .record import Record

#: Once a failure is found, hypothesis shrinks it for at most this long.
SHRINK_SECONDS = 10.0


@dataclasses.dataclass
class SearchResult:
    failure: Failure | None
    #: Generated (hypothesis) input sets compared.
    generated: int
    #: Recipes not run, with the reason (time budget, memory budget).
    skipped: dict[Recipe, str]
    #: Per open axis (no known limit): why its walk past the plan stopped.
    ends: dict[str, str] = dataclasses.field(default_factory=dict)
    #: A divergence only NaN/Inf inputs revealed, set aside as a warning (unless ``edge_cases={"nonfinite": True}``):
    #: ONNX Runtime's MaxPool and ReduceMax drop a NaN that torch propagates, so most max-pooling CNNs differ there.
    nonfinite: Failure | None = None


class _Found(Exception):
    """Raised inside the hypothesis test body so hypothesis shrinks the input that failed."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def search(
    probe: Probe, options: CheckOptions, plan: Mapping[str, tuple[int, ...]], open_axes: Collection[str] = ()
) -> SearchResult:
    """Run the edge cases, then the walk of each open axis past the plan, then generated recipes, until a failure,
    the budget, or the end.

    The time not spent in the probe's own phases (hypothesis drawing and shrinking) is timed as "search".
    """
    started, measured = time.perf_counter(), sum(probe.timings.values())
    try:
        return _search(probe, options, plan, open_axes)
    finally:
        overhead = time.perf_counter() - started - (sum(probe.timings.values()) - measured)
        probe.timings["search"] = probe.timings.get("search", 0.0) + max(0.0, overhead)


def _search(
    probe: Probe, options: CheckOptions, plan: Mapping[str, tuple[int, ...]], open_axes: Collection[str]
) -> SearchResult:
    deadline = time.monotonic() + options.time_budget
    skipped: dict[Recipe, str] = {}
    edges = inputs.edge_recipes(probe.specs, options, plan)
    widest = max(edges, key=lambda r: inputs.elements(r, probe.specs))
    if inputs.elements(widest, probe.specs) > MAX_ELEMENTS:
        raise OnnxParityUsageError(
            f"the input set {widest.describe()} would hold {inputs.elements(widest, probe.specs):,} elements "
            f"(the budget is {MAX_ELEMENTS:,}): pass smaller batch_sizes / axis_sizes."
        )
    aside = None
    for recipe in edges:
        if recipe.pattern != "example" and time.monotonic() > deadline:
            skipped[recipe] = f"time budget ({options.time_budget:g} s, option time_budget)"
            continue
        failure = _run(probe, recipe, options)
        if failure is not None and recipe.pattern == inputs.NONFINITE and NONFINITE_FAILS not in options.edge_cases:
            aside = failure
        elif failure is not None:
            return SearchResult(failure, 0, skipped, nonfinite=aside)
    ends: dict[str, str] = {}
    share = min(deadline, time.monotonic() + PAST_PLAN_SHARE * options.time_budget)
    failure = _past_plan(probe, plan, open_axes, share, ends, options) or _towards_limits(probe, options, deadline)
    if failure is not None:
        return SearchResult(failure, 0, skipped, ends, aside)
    before = len(probe.record.checked)
    failure = _explore(probe, options, plan, deadline) if options.examples and time.monotonic() < deadline else None
    return SearchResult(failure, len(probe.record.checked) - before, skipped, ends, aside)


#: The share of the time budget the walk past the plan of an open axis may take (the sizes it reaches cost more
#: each step: a sequence twice as long costs twice, or four times for attention).
PAST_PLAN_SHARE = 1 / 60
#: What the next, twice-as-long size is assumed to cost against the last (attention is quadratic in length).
STEP_GROWTH = 4.0


def _past_plan(
    probe: Probe,
    plan: Mapping[str, tuple[int, ...]],
    open_axes: Collection[str],
    stop: float,
    ends: dict[str, str],
    options: CheckOptions,
) -> Failure | None:
    """An axis with no known limit is walked past its plan (512), doubling, until the model rejects a size, the
    next size would pass the memory budget, or it would not finish within ``stop``; ``ends`` records which."""
    for dim in open_axes:
        planned = [r for r in probe.record.checked if inputs.is_walk(r) and r.label.startswith(f"edge: {dim}=")]
        top = max(plan[dim])
        template = next((r for r in planned if r.dims_dict()[dim] == top), None)
        if template is None:  # the plan's top size was rejected (the model's limit, bisected next) or not run
            rejected = [r.dims_dict()[dim] for r in probe.record.rejected if r.label.startswith(f"edge: {dim}=")]
            if rejected:
                ends[dim] = f"the model rejected {dim}={min(rejected)}"
            continue
        # A model's other items (providers, variants) walk the sizes its first item walked: their reference
        # outputs are memoized, and every item of the model reaches as far.
        shared = (*probe.memo_scope, "walk past the plan", dim)
        if probe.memo is not None and shared in probe.memo:
            first_walk: tuple[tuple[int, ...], str] = probe.memo.get(shared, lambda: ((), ""))
            walked, ends[dim] = first_walk
            for size in walked:
                failure = _run(probe, _resized(template, dim, size), options)
                if failure is not None:
                    return failure
            continue
        failure, walked, ends[dim] = _walk(probe, template, dim, top, stop, options)
        if failure is not None:
            return failure
        if probe.memo is not None:
            probe.memo.put(shared, (walked, ends[dim]))
    return None


def _resized(template: Recipe, dim: str, size: int) -> Recipe:
    dims = tuple((d, size if d == dim else n) for d, n in template.dims)
    return Recipe(f"edge: {dim}={size}", dims, template.pattern, template.scale, template.seed)


def _walk(
    probe: Probe, template: Recipe, dim: str, top: int, stop: float, options: CheckOptions
) -> tuple[Failure | None, tuple[int, ...], str]:
    """Double ``dim`` from ``top`` on ``template``: (a failure, the sizes run, what ended the walk)."""
    size, seconds, walked = top, 0.0, list[int]()
    while True:
        size = sizes.next_prime(2 * size)
        step = _resized(template, dim, size)
        if inputs.elements(step, probe.specs) > MAX_ELEMENTS:
            return None, tuple(walked), f"the memory budget ({MAX_ELEMENTS:,} input elements) at {dim}={size}"
        started = time.monotonic()
        if started + STEP_GROWTH * seconds > stop:
            end = f"the time budget at {dim}={size} (option time_budget; this walk takes a sixtieth of it)"
            return None, tuple(walked), end
        failure = _run(probe, step, options)
        if failure is not None:
            return failure, tuple(walked), ""
        walked.append(size)
        if step in probe.record.rejected:
            return None, tuple(walked), f"the model rejected {dim}={size}"
        seconds = time.monotonic() - started


def _run(probe: Probe, recipe: Recipe, options: CheckOptions) -> Failure | None:
    """``probe(recipe)``; ONNX Runtime dying in the worker process, or one input set's run past twice the time budget
    (at least ``watchdog.MIN_SECONDS``: a forward pass or an ONNX Runtime run that never returns), fails on it."""
    from ..report.parity import Failure
    from ..runners.worker import Crashed

    try:
        with watchdog.limit(watchdog.seconds_for(options.time_budget)):
            return probe(recipe)
    except (Crashed, watchdog.Hung) as exc:
        feed = inputs.materialize(recipe, probe.specs, probe.example, probe.mask_holes, probe.special_ids)
        kind = FailureKind.ONNXRUNTIME_CRASH if isinstance(exc, Crashed) else FailureKind.HUNG
        return Failure(kind, str(exc), recipe.to_dict(), recipe.describe(), {k: list(v.shape) for k, v in feed.items()})


#: How many sizes are tried between the largest accepted and the smallest rejected size of a walked axis.
LIMIT_STEPS = 4


def _towards_limits(probe: Probe, options: CheckOptions, deadline: float) -> Failure | None:
    """Where the model rejects the top of an axis walk (its real limit is below the one planned, e.g. a position
    table with an offset), bisect towards that limit so the sizes just below it are checked too."""
    walks = [r for r in probe.record.rejected if inputs.is_walk(r)]
    for dim in dict.fromkeys(r.label.removeprefix("edge: ").split("=")[0] for r in walks):
        template = min((r for r in walks if r.label.startswith(f"edge: {dim}=")), key=lambda r: r.dims_dict()[dim])
        high = template.dims_dict()[dim]
        accepted = [r.dims_dict()[dim] for r in probe.record.checked if r.dims_dict().get(dim, high) < high]
        low = max(accepted, default=high)
        for _ in range(LIMIT_STEPS):
            if high - low <= 1 or time.monotonic() > deadline:
                break
            middle = (low + high) // 2
            sized = tuple((d, middle if d == dim else n) for d, n in template.dims)
            step = Recipe(f"edge: {dim}={middle}", sized, template.pattern, template.scale, template.seed)
            failure = _run(probe, step, options)
            if failure is not None:
                return failure
            low, high = (low, middle) if step in probe.record.rejected else (middle, high)
    return None


def _explore(
    probe: Probe, options: CheckOptions, plan: Mapping[str, tuple[int, ...]], deadline: float
) -> Failure | None:
    """Generated inputs through hypothesis, shrinking the first failure (within SHRINK_SECONDS)."""
    from hypothesis import HealthCheck, Phase, Verbosity, control, given, seed
    from hypothesis import settings as hypothesis_settings

    if control.currently_in_test_context():
        raise OnnxParityUsageError(
            "onnx_parity() was called inside a hypothesis @given test; it runs its own hypothesis search over "
            "the model's inputs, which cannot nest. Call it from a plain test (examples= and seed= steer its inputs)."
        )
    found: dict[Recipe, Failure] = {}
    latest: list[Failure] = []
    # Hypothesis's objects refer to each other and to this body: a cycle that lives until a full garbage collection.
    # The body reaches the probe (the model, its runners) through this list, emptied when the search ends, so the
    # model does not live on with them.
    searching = [probe]

    def body(recipe: Recipe) -> None:
        if recipe in found:
            raise _Found(found[recipe])
        stop = deadline if not latest else min(deadline, latest_at[0] + SHRINK_SECONDS)
        if time.monotonic() > stop or inputs.elements(recipe, searching[0].specs) > MAX_ELEMENTS:
            return  # budget spent: the smallest failure found so far stands
        failure = _run(searching[0], recipe, options)
        if failure is not None:
            found[recipe] = failure
            latest.append(failure)
            latest_at[:1] = latest_at[:1] or [time.monotonic()]
            raise _Found(failure)

    latest_at: list[float] = []
    test: Any = given(inputs.recipe_strategy(probe.specs, options, plan))(body)
    test = hypothesis_settings(
        max_examples=options.examples,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )(test)
    try:
        with _private_storage(), _heap_frozen():
            seed(options.seed)(test)()
    except _Found as exc:
        return exc.failure
    except Exception:
        if latest:  # hypothesis's own verdict (a flaky replay ...) must not hide the parity failure found
            return latest[-1]
        raise
    finally:
        searching.clear()
    return latest[-1] if latest else None


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """Hypothesis's first run in a process collects the whole heap (``register_random`` looks for referrers): with
    torch or TensorFlow loaded that is 0.1-0.3 s, and full collections during the search cost as much. What exists
    before the search is not garbage the search makes, so it is set aside (``gc.freeze``) while the search runs.
    Where the user has frozen objects themselves, their freeze is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _private_storage() -> Iterator[None]:
    """Hypothesis caches what it reads of the user's source under ``./.hypothesis`` even without a database;
    the plugin's search keeps its cache in the temporary directory instead, and puts the user's setting back."""
    from hypothesis import configuration

    previous = configuration.storage_directory(intent_to_write=False).home_directory
    configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pytest-onnxparity-hypothesis")
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(previous)


def reach(
    record: Record,
    plan: Mapping[str, tuple[int, ...]],
    skipped: Mapping[Recipe, str],
    ends: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per dynamic axis: the sizes planned, the sizes checked, the largest, each size skipped with why, and what
    bounded the walk (``bound``: the model's limit and where it comes from, a size it rejected, a budget)."""
    out, ends, sources = {}, ends or {}, sources or {}
    for dim, planned in plan.items():
        checked = sorted({r.dims_dict()[dim] for r in record.checked if dim in r.dims_dict()})
        why_not: dict[int, str] = {}
        reasons = [*skipped.items(), *((r, f"the model rejected it ({w[:120]})") for r, w in record.rejected.items())]
        for recipe, why in reasons:
            size = recipe.dims_dict().get(dim)
            if size is not None and size not in checked:
                why_not.setdefault(size, why)
        axis: dict[str, Any] = {
            "planned": list(planned),
            "checked": checked,
            "largest": max(checked, default=None),
            "skipped": {str(size): why for size, why in sorted(why_not.items())},
        }
        bound = ends.get(dim) or (f"{sources[dim]} ({max(planned)})" if dim in sources else None)
        if bound:
            axis["bound"] = bound
        out[dim] = axis
    return out
