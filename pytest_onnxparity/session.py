"""ParitySession: everything a pytest session keeps about parity checks, and the policy applied to each.

It resolves options, reuses exports, runs the engine, decides pass / fail / skip / strict, writes
artifacts and records each check for the summary, the JSON report and JUnit. The fixture only calls it.
"""

from __future__ import annotations

import dataclasses
import shlex
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import summary
from .errors import OnnxParityError, OnnxParityWarning, ParityMismatch
from .settings import CheckOptions, SessionPolicy, marker_options, resolve

if TYPE_CHECKING:
    from .engine import CheckResult
    from .export import ExportedModel
    from .report import ParityReport

#: The parity entries of one test item (shipped to the xdist controller on its call report).
ITEM_ENTRIES = pytest.StashKey[list[dict[str, Any]]]()
#: How many onnx_parity calls a test item made so far (the first one of a benchmark item is timed).
ITEM_CALLS = pytest.StashKey[int]()


def model_key(node: Any) -> str:
    """The test without the plugin's own parameters: the same key for its provider and benchmark items."""
    params = getattr(getattr(node, "callspec", None), "params", {})
    rest = ",".join(
        f"{k}={v!r}" for k, v in sorted(params.items()) if k not in ("onnx_parity_provider", "_onnx_parity_benchmark")
    )
    base = node.nodeid.split("[")[0]
    return f"{base}[{rest}]" if rest else base


class ExportCache:
    """One export per model per session, keyed by the test, the model's fingerprint and the export options;
    with ``--onnx-cache-dir``, also across sessions (written atomically; xdist workers may share it)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._exports: dict[str, ExportedModel] = {}
        #: Exports actually run (neither reused nor read from the cache), by key: what the tests count.
        self.exports_run: list[str] = []

    def exporter(self, test: str, fresh: bool = False) -> Callable[..., ExportedModel]:
        from .export import cache_key, export

        def get(
            prepared: Any, axes: Mapping[str, Mapping[int, str]], options: CheckOptions, workdir: Path
        ) -> ExportedModel:
            key = cache_key(test, prepared, axes, options)
            hit = None if fresh or key is None else self._exports.get(key)
            if hit is not None:
                return dataclasses.replace(hit, origin="reused", seconds=0.0, key=key)
            entry = None
            if self.directory is not None:
                stored = cache_key(test, prepared, axes, options, persistent=True)
                entry = None if stored is None else self.directory / stored
            exported = None if fresh or entry is None else _read_cached(entry)
            if exported is None:
                exported = export(prepared, axes, options, workdir)
                self.exports_run.append(key or test)
                if entry is not None:
                    _write_cached(entry, exported)
            exported = dataclasses.replace(exported, key=key)
            if key is not None:
                self._exports[key] = exported
            return exported

        return get


def _read_cached(entry: Path) -> ExportedModel | None:
    import json

    from . import graph
    from .export import ExportedModel

    meta = entry / "meta.json"
    if not meta.is_file():
        return None
    recorded = json.loads(meta.read_text())
    info = graph.inspect(entry / "model.onnx", user_file=False)
    return ExportedModel(
        str(entry / "model.onnx"),
        recorded["exporter"],
        tuple(recorded["notes"]),
        tuple(recorded["warnings"]),
        info,
        "cached",
    )


def _write_cached(entry: Path, exported: ExportedModel) -> None:
    """Write ``entry`` whole or not at all: a temporary directory beside it, renamed into place."""
    import json
    import os
    import shutil
    import tempfile

    import onnx

    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    onnx.save(onnx.load(exported.path), str(staging / "model.onnx"))  # one self-contained file
    record = {"exporter": exported.exporter, "notes": list(exported.notes), "warnings": list(exported.warnings)}
    (staging / "meta.json").write_text(json.dumps(record))
    if (entry / "meta.json").is_file():  # a stale entry of ours (a fresh export replaces it)
        shutil.rmtree(entry)
    try:
        os.replace(staging, entry)
    except OSError:  # another xdist worker wrote the same entry first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


class ParitySession:
    def __init__(self, config: pytest.Config, policy: SessionPolicy, defaults: Mapping[str, Any]) -> None:
        self.config, self.policy, self.defaults = config, policy, dict(defaults)
        self.exports = ExportCache(policy.cache_dir)
        from .runners import ReferenceMemo

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

    def run(self, prepared: Any, options: CheckOptions, provider: str, workdir: Path, node: Any) -> CheckResult:
        """The engine through the export cache; a failure on a reused export is re-checked on a fresh one."""
        from .engine import run

        test = model_key(node)
        result = run(prepared, options, provider, workdir, node.nodeid, self.exports.exporter(test), self.references)
        if not result.report.passed and result.exported.origin in ("reused", "cached"):
            # A graph from earlier is never trusted on its own: the verdict is the fresh export's.
            earlier = result.exported
            fresh = self.exports.exporter(test, fresh=True)
            result = run(prepared, options, provider, workdir, node.nodeid, fresh, self.references)
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
    ) -> ParityReport:
        """The fixture's body: run one check and apply the session's policy to it."""
        __tracebackhide__ = True
        from .runners.onnxruntime import ProviderUnavailable

        node = request.node
        entries = node.stash.setdefault(ITEM_ENTRIES, [])
        index = node.stash[ITEM_CALLS] = node.stash.get(ITEM_CALLS, -1) + 1
        try:
            from .engine import prepare

            options = self.options(node, call)
            workdir = request.getfixturevalue("tmp_path_factory").mktemp(f"onnx_parity_{index}", numbered=True)
            extra = [adapter for added in self.config.hook.pytest_onnxparity_adapters() for adapter in added]
            prepared = prepare(model, example, options, extra)
            try:
                if bench_case is not None and index == 0:
                    from . import benchmark

                    return benchmark.run(self, request, prepared, options, provider, bench_case, workdir)
                result = self.run(prepared, options, provider, workdir, node)
            finally:
                prepared.close()
        except ProviderUnavailable as exc:
            entries.append(summary.error_entry(node.nodeid, provider, str(exc), "skipped"))
            if self.policy.require_providers:
                pytest.fail(
                    f"onnx_parity: {exc} (--onnx-require-providers turns this skip into a failure)", pytrace=False
                )
            pytest.skip(f"onnx_parity: {exc}")
        except OnnxParityError as exc:
            entries.append(summary.error_entry(node.nodeid, provider, str(exc)))
            raise type(exc)(f"onnx_parity: {exc}") from None
        except Exception as exc:
            entries.append(summary.error_entry(node.nodeid, provider, f"{type(exc).__name__}: {exc}"))
            raise
        return self.decide(request, index, options, result)

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
                f"pytest {shlex.quote(node.nodeid)} --onnx-seed={options.seed} --onnx-providers={report.provider}"
            )
            if self.policy.artifacts is not None and result.case is not None:
                self._save_artifacts(node.nodeid, index, result)
        elif index == 0 and self.benchmark is not None:
            self.benchmark.parity[(model_key(node), report.provider)] = (result.exported.path, report)
        node.stash[ITEM_ENTRIES].append(summary.plain(report.to_dict()))
        node.user_properties.extend(summary.junit_properties(index, report))
        if not report.passed:
            raise ParityMismatch(report) from None
        if report.warnings and self.policy.strict:
            pytest.fail(
                "onnx_parity (--onnx-strict): the check passed with warnings:\n  - " + "\n  - ".join(report.warnings),
                pytrace=False,
            )
        for text in report.warnings:
            warnings.warn(OnnxParityWarning(f"{node.nodeid} [{report.provider}]: {text}"), stacklevel=4)
        return report
