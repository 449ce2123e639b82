"""One export per model, an opt-in cache across sessions that is never trusted on its own, and where the
time goes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import ROOT

COUNTING_CONFTEST = """
import pytest_onnxparity.export.cache as export_module
from tests.standin import standin

EXPORTS = []
_export = export_module.export

def _counting(prepared, *args, **kwargs):
    EXPORTS.append(type(prepared).__name__)
    return _export(prepared, *args, **kwargs)

export_module.export = _counting

def pytest_onnxparity_providers():
    return [standin()]

def pytest_sessionfinish(session):
    print(f"\\nEXPORTS {len(EXPORTS)}")
    export_module.export = _export  # the inner session runs in this process: leave the module as it was
"""

TWO_MODELS = """
import pytest
from sample_models.torch_models import build

@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_model(onnx_parity, name):
    model, example, options = build(name)
    assert onnx_parity(model, example, **options).passed
    assert onnx_parity(model, example, examples=0, **options).passed    # a second call in the same test
"""


def test_one_export_per_model_across_providers_benchmarks_and_repeated_calls(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_benchmark")
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_two=TWO_MODELS)
    result = pytester.runpytest(
        "--onnx-providers=cpu,standin",
        "--onnx-benchmark",
        "--benchmark-max-time=0.01",
        "--benchmark-min-rounds=1",
        "-s",
        "-p",
        "no:cacheprovider",
        "--onnx-report=r.json",
    )
    result.assert_outcomes(passed=2 * (2 + 3 * 2))  # per model: 2 providers, 3 runtimes x 2 batch sizes
    result.stdout.fnmatch_lines(["EXPORTS 2"])
    checks = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert sorted(c["export_origin"] for c in checks).count("exported") == 2
    assert all(c["export_origin"] in ("exported", "reused") for c in checks)


NET = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)
    def forward(self, x):
        return torch.tanh(self.fc(x)){change}
"""

CACHED = (
    NET
    + """
def test_net(onnx_parity):
    onnx_parity(Net().eval(), torch.randn(2, 4), examples=3)
"""
)


def test_the_export_cache_across_sessions_is_keyed_by_code_and_never_trusted_alone(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    args = ("-p", "no:cacheprovider", "--onnx-cache-dir=cache", "--onnx-report=r.json")

    def run(change: str = "") -> dict:
        pytester.makepyfile(test_cached=CACHED.format(change=change))
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
        (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
        return check

    cold = run()
    warm = run()
    assert (cold["export_origin"], warm["export_origin"]) == ("exported", "cached")
    assert warm["timings"]["export"] < cold["timings"]["export"]
    # The model's code changed: its cached graph is not the model any more, so it is not used.
    assert run(change=" * 2")["export_origin"] == "exported"
    # A stale entry under the current key (the graph of another model, stored with its digest: stale by something
    # no key sees, such as a data file the model reads) cannot decide the verdict.
    import onnx
    from onnx import helper

    from pytest_onnxparity.export.store import _digest

    (entry,) = [
        p
        for p in (pytester.path / "cache").iterdir()
        if (p / "model.onnx").is_file() and "Mul" in {n.op_type for n in onnx.load(str(p / "model.onnx")).graph.node}
    ]
    stale = onnx.load(str(entry / "model.onnx"))
    stale.graph.node.append(helper.make_node("Neg", [stale.graph.output[0].name], ["negated"]))
    stale.graph.output[0].name = "negated"
    onnx.save(stale, str(entry / "model.onnx"))
    record = json.loads((entry / "meta.json").read_text())
    record["files"]["model.onnx"] = _digest(entry / "model.onnx")
    (entry / "meta.json").write_text(json.dumps(record))
    replaced = run(change=" * 2")
    assert replaced["passed"] and replaced["export_origin"] == "exported"
    assert any("did not match the model; a fresh export did and replaced it" in w for w in replaced["warnings"])
    assert run(change=" * 2")["export_origin"] == "cached"  # the fresh export is what the cache holds now


HELPED = """
import torch
from helpers import scale

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)
    def forward(self, x):
        return scale(torch.tanh(self.fc(x)))

def test_net(onnx_parity):
    onnx_parity(Net().eval(), torch.randn(2, 4), examples=3, exporter="dynamo")
"""


def test_a_helper_the_forward_calls_in_another_module_is_in_the_cache_key(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    """The cached graph is what the code traced: a changed helper (not in the file of any model class) is a miss."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_helped=HELPED)

    def run(helper: str, **outcomes: int) -> dict:
        pytester.makepyfile(helpers=f"def scale(x):\n    return {helper}\n")
        pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--onnx-cache-dir=cache", "--onnx-report=r.json"
        ).assert_outcomes(**outcomes)
        (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
        return check

    assert run("x * 2", passed=1)["export_origin"] == "exported"
    assert run("x * 2", passed=1)["export_origin"] == "cached"
    # int() of the batch size: the export now freezes the batch, which the check catches; the old entry would pass
    frozen = run("x.reshape(int(x.shape[0]), -1) * 2", failed=1)
    assert frozen.get("export_origin") != "cached" and not frozen["passed"]
    assert run("x * 2", passed=1)["export_origin"] == "cached"  # the helper as it was: its entry again


def test_phase_timings_in_the_report_and_with_verbose(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import torch\n\ndef test_t(onnx_parity):\n    onnx_parity(torch.nn.Linear(3, 2).eval(), torch.zeros(2, 3))\n"
    )
    result = pytester.runpytest("-v", "-p", "no:cacheprovider", "--onnx-report=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*where the time went*", "*test_t?cpu?  export * s (exported), sessions * s*"])
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert {"export", "sessions", "inputs", "reference", "onnxruntime", "compare", "search"} <= set(check["timings"])
    assert all(seconds >= 0 for seconds in check["timings"].values())


def test_an_unreadable_cache_entry_is_a_miss_that_a_fresh_export_replaces(pytester: pytest.Pytester) -> None:
    """A truncated graph, a broken record (or one of an older version, without digests) or a missing file in
    --onnx-cache-dir never fails the check: the model is exported afresh, a warning names the entry, and the entry is
    rewritten (the next run reads it again)."""
    pytester.makepyfile(test_cached=CACHED.format(change=""))
    args = ("-p", "no:cacheprovider", "--onnx-cache-dir=cache", "--onnx-report=r.json")

    def run() -> dict:
        pytester.runpytest(*args).assert_outcomes(passed=1)
        (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
        return check

    assert run()["export_origin"] == "exported"
    (entry,) = (pytester.path / "cache").iterdir()
    graph = (entry / "model.onnx").read_bytes()
    meta = (entry / "meta.json").read_text()
    unreadable, changed = "could not be read", "was changed after it was written"
    for corrupt, problem, reason in (
        (lambda: (entry / "model.onnx").write_bytes(graph[:100]), changed, "model.onnx differs from what was written"),
        ((entry / "model.onnx").unlink, changed, "model.onnx is gone"),
        (lambda: (entry / "meta.json").write_text("{not json"), unreadable, "JSONDecodeError"),
        (lambda: (entry / "meta.json").write_text("[]"), unreadable, "TypeError"),
        (lambda: (entry / "meta.json").write_text(meta.split(', "files"')[0] + "}"), unreadable, "KeyError: 'files'"),
    ):
        corrupt()
        check = run()
        assert check["passed"] and check["export_origin"] == "exported"
        (warning,) = [w for w in check["warnings"] if "--onnx-cache-dir" in w]
        assert f"the --onnx-cache-dir entry {entry} {problem}" in warning and reason in warning, warning
        assert "exported afresh" in warning
        assert run()["export_origin"] == "cached"  # rewritten whole
    assert [p.name for p in (pytester.path / "cache").iterdir()] == [entry.name]  # no staging left behind


RELU_NET = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)
    def forward(self, x):
        return torch.relu(self.fc(x))

def test_net(onnx_parity):
    onnx_parity(Net().eval(), torch.randn(2, 4), examples=3)
"""


def test_a_look_alike_graph_swapped_into_a_cache_entry_is_a_miss_with_a_warning(pytester: pytest.Pytester) -> None:
    """Relu replaced by Clip(0, 1e5) agrees on every drawn input, so only the digest of what was stored tells."""
    import onnx
    from onnx import helper, numpy_helper

    pytester.makepyfile(test_relu=RELU_NET)
    args = ("-p", "no:cacheprovider", "--onnx-cache-dir=cache", "--onnx-report=r.json")

    def run() -> dict:
        pytester.runpytest(*args).assert_outcomes(passed=1)
        (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
        return check

    assert run()["export_origin"] == "exported"
    (entry,) = (pytester.path / "cache").iterdir()
    model = onnx.load(str(entry / "model.onnx"))
    (relu,) = [n for n in model.graph.node if n.op_type == "Relu"]
    bounds = [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (1e5, "hi"))]
    model.graph.initializer.extend(bounds)
    clip = helper.make_node("Clip", [relu.input[0], "lo", "hi"], list(relu.output), name=relu.name)
    relu.CopyFrom(clip)
    onnx.save(model, str(entry / "model.onnx"))
    swapped = run()
    assert swapped["passed"] and swapped["export_origin"] == "exported"
    (warning,) = [w for w in swapped["warnings"] if "--onnx-cache-dir" in w]
    assert f"the --onnx-cache-dir entry {entry} was changed after it was written" in warning
    assert "model.onnx differs from what was written" in warning and "exported afresh" in warning
    rewritten = onnx.load(str(entry / "model.onnx"))
    assert "Relu" in {n.op_type for n in rewritten.graph.node} and run()["export_origin"] == "cached"


def test_a_cache_entry_carries_external_weights_and_a_failed_write_is_a_reason(tmp_path) -> None:
    """A model whose weights live beside it (any model over 2 GB) is cached with them; a write that fails says why."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pytest_onnxparity.export.cache import _read_cached, _write_cached
    from pytest_onnxparity.export.exported import ExportedModel
    from pytest_onnxparity.graph import info as graph

    weights = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
            [numpy_helper.from_array(weights, "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=9,
    )
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    onnx.save(model, str(export_dir / "model.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    assert graph.external_files(export_dir / "model.onnx") == {"w.bin"}
    path = str(export_dir / "model.onnx")
    exported = ExportedModel(path, "test", ("a note",), (), graph.inspect(path, user_file=False), "exported")
    entry = tmp_path / "cache" / "key"
    assert _write_cached(entry, exported) is None
    (export_dir / "w.bin").unlink()  # the entry must not lean on the export's folder
    cached, problem = _read_cached(entry)
    assert problem is None and cached is not None and cached.origin == "cached" and cached.notes == ("a note",)
    loaded = onnx.load(cached.path)  # external data resolved beside the entry's model file
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), weights)
    # the export is gone (a moved temporary directory): the write fails with the reason, leaving nothing half-written
    problem = _write_cached(tmp_path / "cache" / "other", exported)
    assert problem is not None and "could not be written to the --onnx-cache-dir entry" in problem
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["key"]


def test_a_read_only_cache_is_read_and_never_stops_the_session(pytester: pytest.Pytester, monkeypatch) -> None:
    """A populated cache on a folder this process cannot write: its entries are used, a new export is checked and
    simply not stored, one warning says so."""
    from tests.conftest import run_unprivileged

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_cached=CACHED.format(change=""))
    args = ("--onnx-cache-dir=cache", "--onnx-report=r.json", "-W", "always::pytest_onnxparity.OnnxParityWarning")
    run_unprivileged(pytester, *args).assert_outcomes(passed=1)
    cache = pytester.path / "cache"
    stored = sorted(p.name for p in cache.iterdir())
    cache.chmod(0o555)
    try:
        warm = run_unprivileged(pytester, *args)
        warm.assert_outcomes(passed=1)
        (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
        assert check["export_origin"] == "cached"
        warm.stdout.fnmatch_lines([f"*--onnx-cache-dir: {cache} is not writable: its exports are used, new ones*"])
        pytester.makepyfile(test_cached=CACHED.format(change=" * 2"))  # another model: a miss
        miss = run_unprivileged(pytester, *args)
        miss.assert_outcomes(passed=1)
        (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
        assert check["export_origin"] == "exported" and not [w for w in check["warnings"] if "cache" in w]
    finally:
        cache.chmod(0o755)
    assert sorted(p.name for p in cache.iterdir()) == stored


def test_staging_left_by_a_killed_writer_is_removed_by_the_next_session(tmp_path, exported) -> None:
    """SIGKILL in the middle of writing an entry leaves its staging folder; the next use of the cache removes it,
    and an older version's that is over an hour old, but never a live writer's or anything else in there."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pytest_onnxparity.export.cache import ExportCache
    from pytest_onnxparity.export.store import _staging_prefix

    cache = tmp_path / "cache"
    cache.mkdir()
    writer = (
        "import shutil, sys, time\n"
        "from pathlib import Path\n"
        "from pytest_onnxparity.export import store as cache_store\n"
        "copy = shutil.copyfile\n"
        "def stall(*args, **kwargs):\n"
        "    copy(*args, **kwargs)\n"
        "    print('COPIED', flush=True)\n"
        "    time.sleep(600)\n"
        "shutil.copyfile = stall\n"
        "cache_store.write(Path(sys.argv[2]) / 'entry', Path(sys.argv[1]), {})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", writer, str(exported("mlp")), str(cache)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "COPIED"
    child.send_signal(signal.SIGKILL)
    child.wait()
    (killed,) = cache.iterdir()
    assert (killed / "model.onnx").is_file() and not (cache / "entry").exists()
    live = cache / f"{_staging_prefix()}writing"  # this process: alive
    old_version = cache / f".{'ab' * 32}.x1y2z3"
    for folder in (live, old_version, cache / ".git"):
        folder.mkdir()
    hours_ago = time.time() - 2 * 3600
    os.utime(old_version, (hours_ago, hours_ago))
    ExportCache(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted([live.name, ".git"])


COUNTED = (
    NET.format(change="")
    + """
CALLS = []

def count(module, args):
    if not torch.compiler.is_compiling():
        CALLS.append(args[0].shape[0])

def test_net(onnx_parity, request):
    CALLS.clear()
    net = Net().eval()
    net.register_forward_pre_hook(count)
    report = onnx_parity(net, torch.randn(2, 4), examples=5)
    print(f"\\nFORWARD {request.node.callspec.params['onnx_parity_provider']} {len(CALLS)} {report.examples}")
"""
)


CPU_RUNS = """
import collections, os
from pytest_onnxparity.runners.onnxruntime import OrtRunner
from pytest_onnxparity.runners.worker import RemoteRunner

CPU_RUNS = collections.Counter()
RUNNERS = (OrtRunner, RemoteRunner)  # in this process (a hook-added provider's) and in the worker process
_infers = [runner.infer for runner in RUNNERS]

def counting(infer):
    def counting_infer(self, feed):
        if self.provider == "cpu":
            CPU_RUNS[os.environ["PYTEST_CURRENT_TEST"].split("[")[1].split("]")[0]] += 1
        return infer(self, feed)
    return counting_infer

for runner, infer in zip(RUNNERS, _infers):
    runner.infer = counting(infer)

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"CPU_RUNS {dict(CPU_RUNS)}")

def pytest_unconfigure(config):
    for runner, infer in zip(RUNNERS, _infers):
        runner.infer = infer  # the inner session runs in this process: later tests get the real runners
"""


def test_a_models_provider_items_share_its_reference_and_cpu_runs(pytester: pytest.Pytester) -> None:
    """The second provider's item runs the framework once (preparing the model), never on an input set or on the
    contracts' inputs: the first item's outputs serve it, and the determinism check it already passed stands. It
    compares with ONNX Runtime's CPU outputs the CPU item recorded, without opening a CPU session of its own."""
    pytester.makeconftest(COUNTING_CONFTEST + CPU_RUNS)
    pytester.makepyfile(test_counted=COUNTED)
    result = pytester.runpytest("--onnx-providers=cpu,standin", "-s", "-p", "no:cacheprovider", "--onnx-report=r.json")
    result.assert_outcomes(passed=2)
    printed = [line.split()[1:] for line in result.outlines if line.startswith("FORWARD")]
    calls = {provider: (int(forwards), int(examples)) for provider, forwards, examples in printed}
    (cpu_calls, cpu_examples), (standin_calls, standin_examples) = calls["cpu"], calls["standin"]
    assert standin_examples == cpu_examples > 5
    # preparing, the example twice (determinism), every other input set once: the example is not run a third time
    assert cpu_calls == 1 + 2 + (cpu_examples - 1)
    assert standin_calls == 1
    result.stdout.fnmatch_lines([f"CPU_RUNS {{'cpu': {cpu_examples}}}"])  # the standin item ran no CPU session
    standin = next(c for c in json.loads((pytester.path / "r.json").read_text())["checks"] if "standin" in c["nodeid"])
    assert [o["total"] > 0 for o in standin["versus_cpu"]] == [True]  # it still compared with the CPU outputs
    # Without a CPU item before it, the provider's item opens its own CPU session and runs it on every input set.
    alone = pytester.runpytest("--onnx-providers=standin", "-s", "-p", "no:cacheprovider")
    alone.assert_outcomes(passed=1)
    alone.stdout.fnmatch_lines([f"CPU_RUNS {{'standin': {standin_examples}}}"])


def test_repeated_calls_in_a_test_share_outputs_only_of_the_same_inputs(pytester: pytest.Pytester) -> None:
    """Calls that reuse one export but build other inputs from the same recipes (another example's values, other
    input ranges) must not be handed the outputs of the first call's inputs. Before, they were: the figures showed
    differences of 2 and 1064 that the noise estimate (run on the real inputs) then excused."""
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(
        NET.format(change="")
        + """
def test_calls(onnx_parity):
    model = Net().eval()
    assert onnx_parity(model, torch.ones(2, 4), examples=3).passed
    assert onnx_parity(model, torch.full((2, 4), 5.0), examples=3).passed
    assert onnx_parity(model, torch.ones(2, 4), examples=3, input_ranges={"x": (-50, 50)}).passed
"""
    )
    result = pytester.runpytest("--onnx-providers=cpu,standin", "-p", "no:cacheprovider", "--onnx-report=r.json")
    result.assert_outcomes(passed=2)
    checks = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert len(checks) == 6 and [c["export_origin"] for c in checks].count("exported") == 1
    figures = [o for c in checks for o in (*c["outputs"], *c["versus_cpu"])]
    assert figures and all(o["max_abs_diff"] < 1e-2 and o["rule"] == "tolerance" for o in figures), figures


def test_recording_names_the_users_files_a_run_called_into_and_leaves_a_profiler_as_it_was(tmp_path) -> None:
    import importlib.util
    import sys

    from pytest_onnxparity.adapters.sources import recording

    (tmp_path / "helper_mod.py").write_text("import numpy as np\n\ndef helper(x):\n    return np.tanh(x) * 2\n")
    spec = importlib.util.spec_from_file_location("helper_mod", tmp_path / "helper_mod.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def outer_profiler(frame, event, arg) -> None:  # a profiler of the user's (cProfile, a debugger)
        return None

    sys.setprofile(outer_profiler)
    try:
        with recording() as files:
            module.helper(np.ones(3))
            json.dumps({"a": 1})  # the standard library: not the user's code
        assert sys.getprofile() is outer_profiler
    finally:
        sys.setprofile(None)
    assert files == {str(tmp_path / "helper_mod.py")}
