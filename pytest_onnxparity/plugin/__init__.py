"""pytest hooks: options, ini keys, the marker, the fixtures, and the session's summary and reports.

Standard library and pytest only: torch, tensorflow, onnx, onnxruntime and hypothesis are imported
when a parity check actually runs, never when the plugin loads. The state lives in ``session.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from ..errors import OnnxParityError, OnnxParityWarning
from ..options.settings import SessionPolicy
from ..options.validate import VALIDATORS
from ..providers import registry
from . import distribute
from .items import ITEM_ENTRIES
from .session import ParitySession, SessionHooks

SESSION = pytest.StashKey[ParitySession]()
_PREVIOUS_PROVIDERS = pytest.StashKey[dict[str, Any]]()


def _axis_sizes(text: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        axis, eq, sizes = part.partition("=")
        if not eq:
            raise ValueError(part)
        out[axis.strip()] = tuple(int(x) for x in sizes.split(","))
    return out


#: (option, ini key, parser, help) for the options with an ini twin; the parser raises ValueError.
_VALUED_OPTIONS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
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
    (
        "--onnx-batch-sizes",
        "onnx_parity_batch_sizes",
        lambda v: tuple(int(x) for x in v.split(",")),
        "batch sizes to check, comma separated (default 1,3,17)",
    ),
    (
        "--onnx-axis-sizes",
        "onnx_parity_axis_sizes",
        _axis_sizes,
        "sizes per named axis: seq=1,7,64;batch=1,33",
    ),
    ("--onnx-time-budget", "onnx_parity_time_budget", float, "seconds of checking per check before sizes are skipped"),
    ("--onnx-report", "onnx_parity_report", str, "write a JSON report of every parity check to this path"),
    ("--onnx-artifacts", "onnx_parity_artifacts", str, "save each failing check's model and inputs/outputs here"),
    ("--onnx-cache-dir", "onnx_parity_cache_dir", str, "keep exports here across sessions (keyed by model and code)"),
    ("--onnx-benchmark-plot", "onnx_parity_benchmark_plot", str, "with --onnx-benchmark: write a latency PNG here"),
    (
        "--onnx-variants",
        "onnx_parity_variants",
        str,
        "also check variants built from each export, one item each: optimized,simplified,fp16,int8-dynamic,int8-static",
    ),
)
_FLAGS = (
    ("--onnx-require-providers", "onnx_parity_require_providers", "fail, not skip, when a provider is missing"),
    ("--onnx-strict", "onnx_parity_strict", "fail checks that pass with plugin warnings (fallbacks, fewer examples)"),
    ("--onnx-benchmark", "onnx_parity_benchmark", "also time framework vs each provider through pytest-benchmark"),
)
_PATHS = ("report", "artifacts", "benchmark_plot", "cache_dir")


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


def _value(config: pytest.Config, ini: str) -> tuple[Any, Path]:
    """(command line value, else the ini file's; the directory relative paths resolve against)."""
    value = config.getoption(ini)
    if value not in ("", None, []):
        return value, config.invocation_params.dir
    value = config.getini(ini)
    return (None if value in ("", None, []) else value), config.rootpath


def _writable_path(option: str, raw: str, base: Path, directory: bool) -> Path:
    """Resolve (``~`` expanded, relative to ``base``) and refuse what could not be written at session end."""
    path = base / Path(raw).expanduser()
    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if path.is_dir() else "a file"
        raise pytest.UsageError(f"{option}: {path} is {kind}; pass {'a directory' if directory else 'a file path'}.")
    # the nearest existing directory it would be written in (a file path: its parents; a directory: itself too)
    parent = next(p for p in [*([path] if directory else []), *path.parents] if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise pytest.UsageError(
            f"{option}: cannot write {path}: {parent} is {'not writable' if parent.is_dir() else 'a file'}."
        )
    return path


def _read_only_cache(config: pytest.Config, option: str, path: Path) -> bool:
    """An existing cache directory this process cannot write is still read (a shared, populated cache on a
    read-only mount): say once that new exports will not be stored there."""
    if not path.is_dir() or os.access(path, os.W_OK):
        return False
    config.issue_config_time_warning(
        OnnxParityWarning(
            f"{option}: {path} is not writable: its exports are used, new ones are not stored there "
            "(make it writable to fill it)"
        ),
        stacklevel=2,
    )
    return True


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, Any, Any]:
    """Runs before pytest-xdist reads ``-n``/``--dist``: with ``-n`` alone, distribute by model."""
    distribute.choose_mode(config)
    return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller, per worker it starts."""
    distribute.tell_worker(node)


@pytest.hookimpl(trylast=True)  # after the plugins that select items by node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a pytest-xdist worker: the items of one model in one group."""
    distribute.group_items(config, items)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "onnx_parity(**options): options of the onnx_parity fixture for this test (atol, rtol, batch_sizes, "
        "axis_sizes, dynamic_axes, input_names, output_names, opset, examples, input_ranges, exporter, seed, "
        "onnx_model, provider_tolerances, edge_cases, time_budget, variants, variant_metrics, ...); call kwargs "
        "override them.",
    )
    try:
        previous = registry.register([d for added in config.hook.pytest_onnxparity_providers() for d in added])
    except ValueError as exc:
        raise pytest.UsageError(f"pytest_onnxparity_providers: {exc}") from None
    config.stash[_PREVIOUS_PROVIDERS] = previous
    defaults: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    for option, ini, parse, _ in _VALUED_OPTIONS:
        raw, base = _value(config, ini)
        if raw is None:
            continue
        key = ini.removeprefix("onnx_parity_")
        try:
            value = parse(raw)
            if key == "providers":
                policy["providers"] = tuple(registry.parse_providers(value))
            elif key == "cache_dir" and _read_only_cache(config, option, base / Path(value).expanduser()):
                policy[key] = base / Path(value).expanduser()
            elif key in _PATHS:
                policy[key] = _writable_path(option, value, base, directory=key in ("artifacts", "cache_dir"))
            else:
                defaults[key] = VALIDATORS[key](value)
        except (ValueError, OnnxParityError) as exc:
            raise pytest.UsageError(f"{option}/{ini}: {raw!r} is not valid: {exc}") from None
    try:
        raw_options, _ = _value(config, "onnx_parity_provider_options")
        defaults["provider_options"] = registry.parse_provider_options(raw_options or [])
    except ValueError as exc:
        raise pytest.UsageError(f"--onnx-provider-options: {exc}") from None
    for _, ini, _ in _FLAGS:
        policy[ini.removeprefix("onnx_parity_")] = bool(_value(config, ini)[0])
    worker = hasattr(config, "workerinput")
    # pytest-benchmark turns itself off under xdist; so do the benchmark items, parity carries on.
    policy["benchmark_allowed"] = not (config.getoption("numprocesses", None) or worker)
    if policy["benchmark"] and not policy["benchmark_allowed"] and not worker:
        config.issue_config_time_warning(
            OnnxParityWarning(
                "--onnx-benchmark is ignored under pytest-xdist (timings need one process, alone on its cores); "
                "parity checks run as usual. Time them in a run without -n (or with -n 0)."
            ),
            stacklevel=2,
        )
    elif policy["benchmark"]:
        from .benchmark import require_pytest_benchmark

        require_pytest_benchmark(config)
    resolved = SessionPolicy(**policy)
    distribute.configure(config, len(resolved.providers), len(defaults.get("variants", ())))
    session = config.stash[SESSION] = ParitySession(config, resolved, defaults)
    config.pluginmanager.register(SessionHooks(config, session), "onnxparity-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Added providers belong to this session (an inner pytester session must not leak its stand-ins)."""
    if _PREVIOUS_PROVIDERS in config.stash:
        registry.register(list(config.stash[_PREVIOUS_PROVIDERS].values()))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per execution provider (``[cpu]``, ``[cuda]``...), plus benchmark items when asked."""
    if "onnx_parity" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[SESSION]
    chosen = list(session.policy.providers)
    variants = session.collection_variants(metafunc.definition)
    values: list[tuple[str, Any, str | None]] = [(p, None, v) for v in (None, *variants) for p in chosen]
    ids = [f"{p}-{v}" if v else p for v in (None, *variants) for p in chosen]
    from .benchmark import cases, collection_batch_sizes

    for case in cases(
        collection_batch_sizes(session.policy, session.config, lambda d: session.options(d, {}), metafunc.definition),
        chosen,
        variants,
    ):
        values.append((chosen[0] if case.runtime == "framework" else case.runtime, case, case.variant))
        ids.append(case.id)
    metafunc.parametrize(("onnx_parity_provider", "_onnx_parity_benchmark", "_onnx_parity_variant"), values, ids=ids)


@pytest.fixture
def _onnx_parity_benchmark() -> Any:
    """The benchmark case of a generated benchmark item (None for parity items)."""
    return None


@pytest.fixture
def _onnx_parity_variant() -> str | None:
    """The variant a generated item checks (``test[cpu-int8-dynamic]``); None for the export itself."""
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
    _onnx_parity_variant: str | None,
) -> Any:
    """``onnx_parity(model, example_inputs, **options) -> ParityReport``; fails the test on any mismatch."""
    session = request.config.stash[SESSION]
    if getattr(request.function, "is_hypothesis_test", False):
        pytest.fail(
            "onnx_parity cannot be used in a hypothesis @given test: it runs its own hypothesis search over the "
            "model's inputs, which cannot nest (and hypothesis refuses function-scoped fixtures in @given tests). "
            "Call it from a plain test; examples= and seed= steer the inputs it generates.",
            pytrace=False,
        )

    def check(model: Any, example_inputs: Any, **options: Any) -> Any:
        __tracebackhide__ = True
        return session.check(
            request, onnx_parity_provider, _onnx_parity_benchmark, model, example_inputs, options, _onnx_parity_variant
        )

    return check


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach this item's parity entries to its teardown report, which xdist ships to the controller: the last
    report, so the entries of checks run in a fixture (setup) come too."""
    report = yield
    if report.when == "teardown" and item.stash.get(ITEM_ENTRIES, None):
        report.onnx_parity = item.stash[ITEM_ENTRIES]
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, Any]:
    """An item stopped by Ctrl-C gets no report to carry its entries (the check in progress is marked so)."""
    try:
        return (yield)
    except KeyboardInterrupt:
        if not hasattr(item.config, "workerinput"):
            started: list[dict[str, Any]] = item.stash.get(ITEM_ENTRIES, [])
            item.config.stash[SESSION].entries.extend(started)
        raise
