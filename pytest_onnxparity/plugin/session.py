"""ParitySession: everything a pytest session keeps about parity checks, and the policy applied to each.

It resolves options, reuses exports, runs the engine, decides pass / fail / skip / strict, writes
artifacts and records each check for the summary, the JSON report and JUnit. The fixture only calls it.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from ..errors import OnnxParityError, OnnxParityWarning
from ..options.settings import CheckOptions, SessionPolicy, marker_options, resolve
from ..report import summary
from ..report.parity import ParityMismatch
from .items import ITEM_CALLS, ITEM_ENTRIES, model_key, test_id, without_group

if TYPE_CHECKING:
    from ..engine.check import CheckResult
    from ..report.parity import ParityReport


class ParitySession:
    def __init__(self, config: pytest.Config, policy: SessionPolicy, defaults: Mapping[str, Any]) -> None:
        self.config, self.policy, self.defaults = config, policy, dict(defaults)
        from ..export.cache import ExportCache

        self.exports = ExportCache(policy.cache_dir)
        from ..runners import ReferenceMemo

        self.references = ReferenceMemo()
        self.entries: list[dict[str, Any]] = []
        self.benchmark: Any = None
        if policy.benchmark_allowed:
            from .benchmark import BenchmarkState

            self.benchmark = BenchmarkState()

    def options(self, node: Any, call: Mapping[str, Any]) -> CheckOptions:
        marker = node.get_closest_marker("onnx_parity")
        return resolve(call, marker_options(marker.args, marker.kwargs) if marker else {}, self.defaults)

    def measurements(self) -> list[Any]:
        return self.benchmark.measurements if self.benchmark is not None else []

    def run(
        self, prepared: Any, options: CheckOptions, provider: str, workdir: Path, node: Any, variant: str | None = None
    ) -> CheckResult:
        """The engine through the export cache (``variant``: built from the export); a failure on a reused export
        is re-checked on a fresh one."""
        from ..engine.check import run

        test = model_key(node)
        exporter = self.exports.exporter(test, variant=variant)
        result = run(prepared, options, provider, workdir, test_id(node), exporter, self.references)
        if not result.report.passed and result.exported.origin in ("reused", "cached"):
            # A graph from earlier is never trusted on its own: the verdict is the fresh export's.
            earlier = result.exported
            fresh = self.exports.exporter(test, fresh=True, variant=variant)
            result = run(prepared, options, provider, workdir, test_id(node), fresh, self.references)
            if result.report.passed:
                result.report.warnings.append(
                    f"the {earlier.origin} export ({earlier.path}) did not match the model; a fresh export did and "
                    "replaced it"
                )
        return result

    def check(
        self,
        request: pytest.FixtureRequest,
        provider: str,
        bench_case: Any,
        model: Any,
        example: Any,
        call: Mapping[str, Any],
        variant: str | None = None,
    ) -> ParityReport:
        """The fixture's body: run one check and apply the session's policy to it.

        ``variant`` is the item's (``test[cpu-int8-dynamic]``); variants named on the call only (not collected as
        items) are checked after the export's own check, in this item.
        """
        __tracebackhide__ = True
        node = request.node
        node.stash.setdefault(ITEM_ENTRIES, [])
        index = node.stash[ITEM_CALLS] = node.stash.get(ITEM_CALLS, -1) + 1
        with self._recorded(node, provider, variant):
            from ..engine.check import prepare
            from ..export.variants import to_build

            options = self.options(node, call)
            builds = [variant or to_build(options)]
            if variant is None and bench_case is None:
                builds += [v for v in options.variants if v not in self.collection_variants(node)]
            workdir = request.getfixturevalue("tmp_path_factory").mktemp(f"onnx_parity_{index}", numbered=True)
            extra = [adapter for added in self.config.hook.pytest_onnxparity_adapters() for adapter in added]
            prepared = prepare(model, example, options, extra)
        try:
            with self._recorded(node, provider, builds[0]):
                if bench_case is not None and index == 0:
                    from . import benchmark

                    return benchmark.run(
                        self.benchmark, self.run, request, prepared, options, provider, bench_case, workdir
                    )
                result = self.run(prepared, options, provider, workdir, node, builds[0])
            report = self.decide(request, index, options, result)
            for build in builds[1:]:
                with self._recorded(node, provider, build):
                    result = self.run(prepared, options, provider, workdir, node, build)
                self.decide(request, index, options, result)
            return report
        finally:
            prepared.close()

    def collection_variants(self, node: Any) -> tuple[str, ...]:
        """The variants this test is parametrized with (marker > command line > ini; call kwargs come too late)."""
        try:
            return self.options(node, {}).variants
        except OnnxParityError:
            return ()  # the test fails with the message when it runs

    def _recorded(self, node: Any, provider: str, variant: str | None) -> _Recorded:
        return _Recorded(self, node, provider, variant)

    def _save_artifacts(self, nodeid: str, index: int, result: CheckResult) -> None:
        """Repro artifacts of a failing check; a write that fails is a warning, never a replacement for the failure."""
        from .artifacts import save_failure

        report = result.report
        try:
            report.artifacts = str(save_failure(self.policy.artifacts or Path(), nodeid, index, result))
        except Exception as exc:
            report.warnings.append(f"could not save the artifacts under {self.policy.artifacts}: {exc}")
            return
        report.repro += (
            f"; replay without the framework: python -m pytest_onnxparity.replay {shlex.quote(report.artifacts)}"
        )

    def decide(
        self, request: pytest.FixtureRequest, index: int, options: CheckOptions, result: CheckResult
    ) -> ParityReport:
        """The policy: record the check, then pass, fail (mismatch, or warnings under strict) or warn."""
        __tracebackhide__ = True
        node, report = request.node, result.report
        if not report.passed:
            report.repro = (
                f"pytest {shlex.quote(test_id(node))} --onnx-seed={options.seed} --onnx-providers={report.provider}"
            )
            if self.policy.artifacts is not None and result.case is not None:
                self._save_artifacts(test_id(node), index, result)
        elif index == 0 and self.benchmark is not None:
            self.benchmark.parity[(model_key(node), report.provider, report.variant)] = (result.exported.path, report)
        node.stash[ITEM_ENTRIES].append(summary.plain({**report.to_dict(), "model": model_key(node)}))
        item_variant = getattr(getattr(node, "callspec", None), "params", {}).get("_onnx_parity_variant")
        node.user_properties.extend(summary.junit_properties(index, report, report.variant != item_variant))
        if not report.passed:
            raise ParityMismatch(report) from None
        if report.warnings and self.policy.strict:
            pytest.fail(
                "onnx_parity (--onnx-strict): the check passed with warnings:\n  - " + "\n  - ".join(report.warnings),
                pytrace=False,
            )
        for text in report.warnings:
            warnings.warn(OnnxParityWarning(f"{test_id(node)} [{report.provider}]: {text}"), stacklevel=4)
        return report


class _Recorded:
    """Around a step of a check: an end without a report is recorded, then a skip (a missing provider or tool)
    or raised with the plugin's prefix. (A class, not a generator: its frame hides from the traceback.)"""

    def __init__(self, session: ParitySession, node: Any, provider: str, variant: str | None) -> None:
        self.session, self.node, self.provider, self.variant = session, node, provider, variant

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        __tracebackhide__ = True
        from ..export.variants import VariantUnavailable
        from ..runners.onnxruntime import ProviderUnavailable

        if exc is None or isinstance(exc, ParityMismatch) or not isinstance(exc, (Exception, KeyboardInterrupt)):
            return False

        def record(message: str, status: str = "error") -> None:
            entry = summary.error_entry(
                test_id(self.node), self.provider, message, status, model_key(self.node), self.variant
            )
            params = getattr(getattr(self.node, "callspec", None), "params", {})
            entry["benchmark"] = params.get("_onnx_parity_benchmark") is not None  # not a row of the variant table
            self.node.stash[ITEM_ENTRIES].append(entry)

        if isinstance(exc, KeyboardInterrupt):
            record("the run was interrupted (Ctrl-C) during this check", "interrupted")
            return False
        if isinstance(exc, (ProviderUnavailable, VariantUnavailable)):
            record(str(exc), "skipped")
            if self.session.policy.require_providers and isinstance(exc, ProviderUnavailable):
                pytest.fail(
                    f"onnx_parity: {exc} (--onnx-require-providers turns this skip into a failure)", pytrace=False
                )
            pytest.skip(f"onnx_parity: {exc}")
        if isinstance(exc, OnnxParityError):
            record(str(exc))
            raise type(exc)(f"onnx_parity: {exc}") from None
        record(f"{type(exc).__name__}: {exc}")
        return False


class SessionHooks:
    """The per-session hooks: collect every check's entry (on the xdist controller too), print, write reports.

    A failing writer says why in the terminal summary; it never hides the test results.
    """

    def __init__(self, config: pytest.Config, session: ParitySession) -> None:
        self.config, self.session = config, session
        self.problems: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entries = getattr(report, "onnx_parity", None)
        if entries and report.when == "teardown":
            self.session.entries.extend(entries)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport) -> None:
        """pytest-xdist's controller: a worker died running ``crashitem`` (its entries died with it)."""
        message = f"the pytest-xdist worker running this test died: {report.longreprtext.strip()}"[:500]
        nodeid = without_group(crashitem)
        self.session.entries.append(summary.error_entry(nodeid, "?", message, "crashed", nodeid.split("[")[0]))

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        from ..runners import worker

        worker.stop()
        if hasattr(self.config, "workerinput") or self.config.option.collectonly:
            return
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        plot_path, report_path = self.session.policy.benchmark_plot, self.session.policy.report
        measurements = self.session.measurements()
        variants = summary.variant_rows(self.session.entries, measurements)
        if plot_path is not None and measurements:
            from ..report.latency import plot

            self._guarded("--onnx-benchmark-plot", lambda: plot(measurements, plot_path, variants))
        if report_path is not None:
            entries = self.session.entries
            self._guarded("--onnx-report", lambda: summary.write_json(report_path, entries, variants, interrupted))

    def _guarded(self, what: str, write: Callable[[], None]) -> None:
        try:
            write()
        except Exception as exc:  # the results stand; the summary says what could not be written
            self.problems.append(f"{what}: could not write: {type(exc).__name__}: {exc}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        if self.session.entries:
            terminalreporter.write_sep(
                "=",
                "ONNX parity summary (margin = share of the conversion's tolerance used, ONNX Runtime's CPU provider "
                "vs the model; provider margin = share of the provider's allowance used, vs the CPU provider)",
            )
            for line in summary.summary_lines(self.session.entries):
                terminalreporter.write_line(line)
            if self.config.get_verbosity() > 0:
                terminalreporter.write_sep("-", "where the time went (seconds per phase)")
                for line in summary.timing_lines(self.session.entries):
                    terminalreporter.write_line(line)
        variants = summary.variant_rows(self.session.entries, self.session.measurements())
        if variants:
            terminalreporter.write_sep("=", "ONNX variants (size, median latency, worst metric over outputs, verdict)")
            for line in summary.variant_lines(variants):
                terminalreporter.write_line(line)
        if self.session.measurements():
            from ..report.latency import summary_lines as benchmark_lines

            terminalreporter.write_sep("=", "ONNX latency (median; speedup over the framework)")
            for line in benchmark_lines(self.session.measurements()):
                terminalreporter.write_line(line)
        for problem in self.problems:
            terminalreporter.write_line(f"onnx_parity: {problem}", red=True)
