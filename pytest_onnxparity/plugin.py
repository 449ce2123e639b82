"""pytest hooks: options, ini keys, the marker, the fixtures, the summary and the reports.

Standard library and pytest only: torch, tensorflow, onnx, onnxruntime and hypothesis are imported
when a parity check actually runs, never when the plugin loads.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from collections.abc import Callable, Generator, Mapping
from typing import Any

import pytest

from . import providers as provider_names
from .errors import OnnxParityError, OnnxParityWarning, ParityMismatch
from .report import ParityReport
from .settings import resolve

SESSION_OPTIONS = pytest.StashKey[Mapping[str, Any]]()
BENCHMARK_STATE = pytest.StashKey[Any]()
PLUGIN_CONFIG = pytest.StashKey[dict[str, Any]]()
ITEM_RESULTS = pytest.StashKey[list[dict[str, Any]]]()

#: (option, ini key, type, help) for the options with an ini twin.
_VALUED_OPTIONS = (
    ("--onnx-providers", "onnx_parity_providers", str, "execution providers, comma separated: cpu,cuda,openvino,..."),
    ("--onnx-examples", "onnx_parity_examples", int, "generated input sets per check, besides the fixed edge cases"),
    ("--onnx-atol", "onnx_parity_atol", float, "absolute tolerance for float outputs (default by dtype)"),
    ("--onnx-rtol", "onnx_parity_rtol", float, "relative tolerance for float outputs (default by dtype)"),
    ("--onnx-opset", "onnx_parity_opset", int, "ONNX opset to export with (default: the exporter's)"),
    (
        "--onnx-seed",
        "onnx_parity_seed",
        int,
        "seed of the input generator (hypothesis); the same seed, the same inputs",
    ),
    ("--onnx-report", "onnx_parity_report", str, "write a JSON report of every parity check to this path"),
    ("--onnx-artifacts", "onnx_parity_artifacts", str, "save each failing check's model and inputs/outputs here"),
    ("--onnx-benchmark-plot", "onnx_parity_benchmark_plot", str, "with --onnx-benchmark: write a latency PNG here"),
)
_FLAGS = (
    ("--onnx-require-providers", "onnx_parity_require_providers", "fail, not skip, when a provider is missing"),
    ("--onnx-strict", "onnx_parity_strict", "fail checks that pass with plugin warnings (fallbacks, fewer examples)"),
    ("--onnx-benchmark", "onnx_parity_benchmark", "also time framework vs each provider through pytest-benchmark"),
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("onnxparity", "ONNX parity (pytest-onnxparity)")
    for option, ini, _, help_text in _VALUED_OPTIONS:
        group.addoption(option, dest=ini, default=None, help=f"{help_text} [ini: {ini}]")
        parser.addini(ini, help_text, default=None)
    for option, ini, help_text in _FLAGS:
        group.addoption(option, dest=ini, action="store_true", default=None, help=f"{help_text} [ini: {ini}]")
        parser.addini(ini, help_text, type="bool", default=False)
    group.addoption(
        "--onnx-provider-options",
        dest="onnx_parity_provider_options",
        action="append",
        default=None,
        metavar="PROVIDER:KEY=VALUE",
        help="an ONNX Runtime provider option, repeatable, e.g. cuda:device_id=1 [ini: onnx_parity_provider_options]",
    )
    parser.addini("onnx_parity_provider_options", "provider options, PROVIDER:KEY=VALUE per line", type="linelist")


def _value(config: pytest.Config, ini: str) -> Any:
    """Command line first, then the ini file."""
    value = config.getoption(ini)
    if value is None:
        value = config.getini(ini)
    return None if value in ("", None, []) else value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "onnx_parity(**options): options of the onnx_parity fixture for this test (atol, rtol, batch_sizes, "
        "dynamic_axes, input_names, output_names, opset, examples, input_ranges, exporter, seed, onnx_model, "
        "provider_tolerances, ...); call kwargs override them.",
    )
    session: dict[str, Any] = {}
    plugin: dict[str, Any] = {}
    for option, ini, kind, _ in _VALUED_OPTIONS:
        raw = _value(config, ini)
        if raw is None:
            continue
        value: Any
        try:
            value = kind(raw)
        except ValueError:
            raise pytest.UsageError(f"{option}/{ini}: {raw!r} is not a valid {kind.__name__}") from None
        if ini == "onnx_parity_providers":
            try:
                plugin["providers"] = provider_names.parse_providers(value)
            except ValueError as exc:
                raise pytest.UsageError(f"{option}: {exc}") from None
        elif ini in ("onnx_parity_report", "onnx_parity_artifacts", "onnx_parity_benchmark_plot"):
            plugin[ini.removeprefix("onnx_parity_")] = config.invocation_params.dir / value
        else:
            key = ini.removeprefix("onnx_parity_")
            if key in ("examples", "opset") and value < (0 if key == "examples" else 1):
                raise pytest.UsageError(f"{option}: {raw!r} must be {'>= 0' if key == 'examples' else '>= 1'}")
            if key in ("atol", "rtol") and not value >= 0:
                raise pytest.UsageError(f"{option}: {raw!r} must be a non-negative number")
            session[key] = value
    try:
        session["provider_options"] = provider_names.parse_provider_options(
            _value(config, "onnx_parity_provider_options") or []
        )
    except ValueError as exc:
        raise pytest.UsageError(f"--onnx-provider-options: {exc}") from None
    for _, ini, _ in _FLAGS:
        plugin[ini.removeprefix("onnx_parity_")] = bool(_value(config, ini))
    session["strict"] = plugin["strict"]
    plugin.setdefault("providers", ["cpu"])
    plugin["benchmark_allowed"] = True
    if config.getoption("numprocesses", None) or _is_worker(config):
        # pytest-benchmark turns itself off under xdist; so do the benchmark items, parity carries on.
        plugin["benchmark_allowed"] = False
        if plugin["benchmark"] and not _is_worker(config):
            config.issue_config_time_warning(
                OnnxParityWarning(
                    "--onnx-benchmark is ignored under pytest-xdist (timings need one process); "
                    "parity checks run as usual"
                ),
                stacklevel=2,
            )
    elif plugin["benchmark"]:
        from .benchmark import require_pytest_benchmark

        require_pytest_benchmark(config)
    config.stash[SESSION_OPTIONS] = session
    config.stash[PLUGIN_CONFIG] = plugin
    if plugin["benchmark_allowed"]:
        from .benchmark import BenchmarkState

        config.stash[BENCHMARK_STATE] = BenchmarkState()
    config.pluginmanager.register(ParityCollector(config), "onnxparity-collector")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per execution provider (``[cpu]``, ``[cuda]``...), plus benchmark items when asked."""
    if "onnx_parity" not in metafunc.fixturenames:
        return
    plugin = metafunc.config.stash[PLUGIN_CONFIG]
    chosen = plugin["providers"]
    values: list[tuple[str, Any]] = [(p, None) for p in chosen]
    ids = list(chosen)
    bench_sizes = _benchmark_batch_sizes(metafunc, plugin)
    if bench_sizes:
        from .benchmark import cases

        for case in cases(bench_sizes, chosen):
            values.append((chosen[0] if case.runtime == "framework" else case.runtime, case))
            ids.append(case.id)
    metafunc.parametrize(("onnx_parity_provider", "_onnx_parity_benchmark"), values, ids=ids)


def _benchmark_batch_sizes(metafunc: pytest.Metafunc, plugin: dict[str, Any]) -> tuple[int, ...]:
    """Batch sizes to benchmark this test at (marker > command line > ini), or () for none."""
    if not plugin["benchmark_allowed"]:
        return ()
    marker = metafunc.definition.get_closest_marker("onnx_parity")
    try:
        settings = resolve({}, dict(marker.kwargs) if marker else {}, metafunc.config.stash[SESSION_OPTIONS])
    except OnnxParityError:
        return ()  # the test itself fails with the message when it runs
    if not (plugin["benchmark"] or (marker is not None and marker.kwargs.get("benchmark"))):
        return ()
    if marker is not None and marker.kwargs.get("benchmark") and not plugin["benchmark"]:
        from .benchmark import require_pytest_benchmark

        require_pytest_benchmark(metafunc.config)
    from .benchmark import benchmark_batch_sizes

    return benchmark_batch_sizes(settings)


@pytest.fixture
def _onnx_parity_benchmark() -> Any:
    """The benchmark case of a generated benchmark item (None for parity items)."""
    return None


@pytest.fixture
def onnx_parity_provider() -> str:
    """The execution provider of this test's parity checks (parametrized from ``--onnx-providers``)."""
    return "cpu"


@pytest.fixture
def onnx_parity(
    request: pytest.FixtureRequest,
    onnx_parity_provider: str,
    _onnx_parity_benchmark: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., ParityReport]:
    """``onnx_parity(model, example_inputs, **options) -> ParityReport``; fails the test on any mismatch."""
    config = request.config
    plugin = config.stash[PLUGIN_CONFIG]
    results = request.node.stash.setdefault(ITEM_RESULTS, [])
    marker = request.node.get_closest_marker("onnx_parity")

    def check(model: Any, example_inputs: Any, **options: Any) -> ParityReport:
        __tracebackhide__ = True
        from .check import run_parity
        from .providers import ProviderUnavailable

        index = len(results)
        try:
            settings = resolve(options, dict(marker.kwargs) if marker else {}, config.stash[SESSION_OPTIONS])
            workdir = tmp_path_factory.mktemp(f"onnx_parity_{_slug(request.node.name)}_{index}", numbered=True)
            extra = [adapter for added in config.hook.pytest_onnxparity_adapters() for adapter in added]
            if _onnx_parity_benchmark is not None and index == 0:
                from . import benchmark

                report = benchmark.run(
                    request,
                    config.stash[BENCHMARK_STATE],
                    model,
                    example_inputs,
                    settings,
                    onnx_parity_provider,
                    _onnx_parity_benchmark,
                    workdir,
                    extra,
                )
                return report
            outcome = run_parity(
                model, example_inputs, settings, onnx_parity_provider, workdir, request.node.nodeid, extra
            )
        except ProviderUnavailable as exc:
            if plugin["require_providers"]:
                results.append(_error_entry(request, onnx_parity_provider, str(exc)))
                pytest.fail(
                    f"onnx_parity: {exc} (--onnx-require-providers turns this skip into a failure)", pytrace=False
                )
            pytest.skip(f"onnx_parity: {exc}")
        except OnnxParityError as exc:
            results.append(_error_entry(request, onnx_parity_provider, str(exc)))
            raise type(exc)(f"onnx_parity: {exc}") from None
        report = outcome.report
        if report.passed and index == 0 and BENCHMARK_STATE in config.stash:
            from .benchmark import model_key

            config.stash[BENCHMARK_STATE].parity[(model_key(request), onnx_parity_provider)] = (
                outcome.onnx_path or "",
                report,
            )
        if not report.passed and plugin.get("artifacts") is not None and outcome.failing_case is not None:
            from .artifacts import save_failure

            report.artifacts = str(save_failure(plugin["artifacts"], request.node.nodeid, index, outcome))
            report.repro += f"; replay without the framework: python -m pytest_onnxparity.replay {report.artifacts}"
        results.append(_plain(report.to_dict()))
        _record_properties(request, index, report)
        if not report.passed:
            raise ParityMismatch(report) from None
        if report.warnings:
            if settings.strict:
                pytest.fail(
                    "onnx_parity (--onnx-strict): the check passed with warnings:\n  - "
                    + "\n  - ".join(report.warnings),
                    pytrace=False,
                )
            for text in report.warnings:
                warnings.warn(OnnxParityWarning(f"{request.node.nodeid} [{report.provider}]: {text}"), stacklevel=2)
        return report

    return check


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def _error_entry(request: pytest.FixtureRequest, provider: str, message: str) -> dict[str, Any]:
    return {"nodeid": request.node.nodeid, "provider": provider, "passed": False, "error": message}


def _record_properties(request: pytest.FixtureRequest, index: int, report: ParityReport) -> None:
    """Key figures as JUnit ``user_properties`` (``--junitxml`` carries them)."""
    prefix = "onnx_parity" if index == 0 else f"onnx_parity_{index}"
    worst = report.worst_output()
    props = {
        "passed": report.passed,
        "provider": report.provider,
        "examples": report.examples,
        "exporter": report.exporter,
        "opset": report.opset,
        "worst_output": worst.name if worst else "",
        "max_abs_diff": worst.max_abs_diff if worst else 0.0,
        "max_rel_diff": worst.max_rel_diff if worst else 0.0,
        "tolerance_used": worst.tolerance_used if worst else 0.0,
    }
    if report.failure is not None:
        props["failure"] = f"{report.failure.kind}: {report.failure.message}"
    request.node.user_properties.extend((f"{prefix}.{k}", v) for k, v in props.items())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach this item's parity results to its call report, which xdist ships to the controller."""
    report = yield
    if report.when == "call" and item.stash.get(ITEM_RESULTS, None):
        report.onnx_parity = item.stash[ITEM_RESULTS]
    return report


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def summary_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One row per check, the closest to failing first."""

    def margin(entry: dict[str, Any]) -> float:
        if "error" in entry or not entry.get("passed", False):
            return math.inf
        return max((float(o["tolerance_used"]) for o in entry["outputs"]), default=0.0)

    rows = []
    for entry in sorted(entries, key=margin, reverse=True):
        if "error" in entry:
            rows.append((entry["nodeid"], entry["provider"], "-", "-", "-", "-", "-", "ERROR"))
            continue
        worst = max(entry["outputs"], key=lambda o: float(o["tolerance_used"]), default=None)
        status = "PASS" if entry["passed"] else "FAIL"
        if worst is None:
            rows.append((entry["nodeid"], entry["provider"], str(entry["examples"]), "-", "-", "-", "-", status))
            continue
        rows.append(
            (
                entry["nodeid"],
                entry["provider"],
                str(entry["examples"]),
                worst["name"],
                f"{float(worst['max_abs_diff']):.2e}",
                f"{float(worst['max_rel_diff']):.2e}",
                f"{worst['atol']:g}/{worst['rtol']:g}",
                f"{status} {float(worst['tolerance_used']):.0%}" if entry["passed"] else status,
            )
        )
    header = ("test", "provider", "examples", "worst output", "max abs", "max rel", "atol/rtol", "margin")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


class ParityCollector:
    """Gathers every check's entry from the test reports (the controller's, under xdist) and writes them out."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.entries: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entries = getattr(report, "onnx_parity", None)
        if entries and report.when == "call":
            self.entries.extend(entries)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if _is_worker(self.config):
            return
        if self.entries:
            terminalreporter.write_sep("=", "ONNX parity summary (margin = share of tolerance used)")
            for line in summary_lines(self.entries):
                terminalreporter.write_line(line)
        measurements = self._measurements()
        if measurements:
            from .benchmark import summary_lines as benchmark_lines

            terminalreporter.write_sep("=", "ONNX latency (median; speedup over the framework)")
            for line in benchmark_lines(measurements):
                terminalreporter.write_line(line)

    def _measurements(self) -> list[Any]:
        state = self.config.stash.get(BENCHMARK_STATE, None)
        return state.measurements if state is not None else []

    def pytest_sessionfinish(self) -> None:
        plot_path = self.config.stash[PLUGIN_CONFIG].get("benchmark_plot")
        if plot_path is not None and self._measurements():
            from .benchmark import plot

            plot(self._measurements(), plot_path)
        path = self.config.stash[PLUGIN_CONFIG].get("report")
        if path is None or _is_worker(self.config):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": 1, "checks": self.entries}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False))
        shutil.move(tmp, path)


def _plain(entry: dict[str, Any]) -> dict[str, Any]:
    """Only JSON types, so xdist can ship the entry and the report can be written as strict JSON."""
    result: dict[str, Any] = json.loads(json.dumps(_json_safe(entry), default=str))
    return result


def _json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats become the strings 'inf', '-inf', 'nan'; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
