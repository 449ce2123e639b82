"""Plugin behaviour in real inner sessions: options, precedence, providers, reports, xdist, artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ROOT, check_planted_file, failure_text, parity_warnings
from tests.defects import weight_off

TINY = """
import pytest, torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)
    def forward(self, x):
        return torch.relu(self.fc(x))

def tiny():
    return Tiny().eval(), torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
"""


def test_loading_the_plugin_imports_no_framework(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys
        def pytest_sessionfinish(session):
            heavy = ("torch", "tensorflow", "onnx", "onnxruntime", "hypothesis", "tf2onnx", "keras", "numpy")
            print("HEAVY:", sorted(m for m in heavy if m in sys.modules))
        """
    )
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)
    assert "HEAVY: []" in result.stdout.str()
    assert "onnxparity" in pytester.runpytest_subprocess("--trace-config").stdout.str()


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.onnx_parity(**options)*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--onnx-providers=cpu,gpu"], "*unknown execution provider 'gpu'; valid: cpu, cuda, tensorrt, openvino*"),
        (["--onnx-examples=lots"], "*--onnx-examples/onnx_parity_examples: 'lots' is not valid*"),
        (["--onnx-atol=-1"], "*--onnx-atol/onnx_parity_atol: '-1' is not valid*got -1*"),
        (["--onnx-atol=inf"], "*--onnx-atol/onnx_parity_atol: 'inf' is not valid*got inf*"),
        (["--onnx-provider-options=cuda"], "*provider option 'cuda' is not PROVIDER:KEY=VALUE*"),
        (["--onnx-provider-options=cpu:foo=bar"], "*the CPU provider takes no provider options*"),
        (["--onnx-batch-sizes=1,0"], "*--onnx-batch-sizes/onnx_parity_batch_sizes: '1,0' is not valid*"),
    ],
)
def test_bad_command_line_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x(onnx_parity):\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_call_beats_marker_beats_command_line_beats_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nonnx_parity_atol = 0.4\nonnx_parity_rtol = 0.04\nonnx_parity_examples = 2\n")
    pytester.makepyfile(
        TINY
        + """
@pytest.mark.onnx_parity(atol=0.2)
def test_layers(onnx_parity):
    model, x = tiny()
    assert onnx_parity(model, x, atol=0.1).outputs[0].atol == 0.1
    report = onnx_parity(model, x)
    assert (report.outputs[0].atol, report.outputs[0].rtol) == (0.2, 0.03)

def test_cli_and_ini(onnx_parity):
    model, x = tiny()
    report = onnx_parity(model, x)
    assert (report.outputs[0].atol, report.outputs[0].rtol) == (0.3, 0.03)
    # the ini file's examples=2: two generated input sets on top of the fixed edge cases
    assert report.examples - onnx_parity(model, x, examples=0).examples == 2
"""
    )
    result = pytester.runpytest("--onnx-atol=0.3", "--onnx-rtol=0.03", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_one_test_per_provider_and_a_missing_provider_skips_or_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TINY + "\ndef test_model(onnx_parity):\n    onnx_parity(*tiny())\n")
    result = pytester.runpytest("--onnx-providers=cpu,CUDAExecutionProvider", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*test_model?cpu?*", "SKIPPED*'cuda' (CUDAExecutionProvider) is not installed*pip install onnxruntime-gpu*"]
    )
    strict = pytester.runpytest("--onnx-providers=cuda", "--onnx-require-providers", "-p", "no:cacheprovider")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--onnx-require-providers turns this skip into a failure*"])


REPORTED = (
    TINY
    + """
def test_a(onnx_parity):
    onnx_parity(*tiny())

def test_b(onnx_parity):
    onnx_parity(*tiny(), exporter="torchscript")
"""
)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_summary_json_and_junit_reports(pytester: pytest.Pytester, xdist: list[str]) -> None:
    pytester.makepyfile(test_reported=REPORTED)
    result = pytester.runpytest_subprocess(
        "--onnx-report=out/parity.json", "--junitxml=junit.xml", "-p", "no:cacheprovider", *xdist
    )
    result.assert_outcomes(passed=2)
    assert result.stdout.str().count("ONNX parity summary") == 1
    result.stdout.fnmatch_lines(["test*provider*examples*worst output*max abs*atol/rtol*reach*margin*"])
    result.stdout.fnmatch_lines(["*test_reported.py::test_?[[]cpu[]]*cpu*PASS*"])
    checks = json.loads((pytester.path / "out" / "parity.json").read_text())["checks"]
    assert sorted(c["nodeid"].split("::")[1] for c in checks) == ["test_a[cpu]", "test_b[cpu]"]
    for check in checks:
        assert check["passed"] and check["provider"] == "cpu" and check["executed_providers"]
        assert {"torch", "onnx", "onnxruntime"} <= set(check["versions"]) and check["opset"]
        assert check["outputs"][0]["name"] == "output" and check["outputs"][0]["total"] > 0
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").getroot().iter("property")}
    assert props["onnx_parity.provider"] == "cpu" and float(props["onnx_parity.max_abs_diff"]) >= 0.0
    assert props["onnx_parity.passed"] == "True" and "onnx_parity.tolerance_used" in props


def test_failing_check_writes_replayable_artifacts(pytester: pytest.Pytester, plant, exported) -> None:
    from pytest_onnxparity.plugin.artifacts import slug

    path = plant("mlp", weight_off)
    case = pytester.path / "artifacts" / slug("test_failing_check_writes_replayable_artifacts.py::test_defect[cpu]")
    text = check_planted_file(pytester, "torch_models", "mlp", path, "--onnx-artifacts=artifacts")
    assert f"artifacts: {case}" in text and f"python -m pytest_onnxparity.replay {case}" in text
    # the inputs, the reference's outputs, and the reference's own noise the rule credited (replay judges alike)
    assert {p.name for p in (case / "test_data_set_0").iterdir()} == {"input_0.pb", "output_0.pb", "noise_0.pb"}
    # A file of the user's in there survives a rerun; the plugin replaces only what it wrote.
    (case / "notes.txt").write_text("mine")
    check_planted_file(pytester, "torch_models", "mlp", path, "--onnx-artifacts=artifacts")
    assert (case / "notes.txt").read_text() == "mine" and (case / "model.onnx").is_file()
    replay = [sys.executable, "-m", "pytest_onnxparity.replay", str(case)]
    failed = subprocess.run(replay, check=False, capture_output=True, text=True, cwd=ROOT)
    assert failed.returncode == 1 and "parity FAILED" in failed.stdout, failed.stdout + failed.stderr
    # The same inputs through the healthy model replay clean: the artifact holds the framework's outputs.
    import onnx

    onnx.save(onnx.load(str(exported("mlp"))), str(case / "model.onnx"))
    passed = subprocess.run(replay, check=False, capture_output=True, text=True, cwd=ROOT)
    assert passed.returncode == 0 and "parity OK" in passed.stdout, passed.stdout + passed.stderr


def test_a_case_directory_without_the_manifest_is_never_written_over(pytester: pytest.Pytester, plant) -> None:
    """A folder of that name that the plugin did not write (no manifest) is the user's: the case goes beside it."""
    from pytest_onnxparity.plugin.artifacts import MANIFEST, slug

    path = plant("mlp", weight_off)
    name = slug("test_a_case_directory_without_the_manifest_is_never_written_over.py::test_defect[cpu]")
    mine = pytester.path / "artifacts" / name
    mine.mkdir(parents=True)
    (mine / "model.onnx").write_bytes(b"the user's own model")
    (mine / "README.txt").write_text("the user's notes")
    for _ in range(2):  # the second run replaces its own case there, still beside the user's folder
        text = check_planted_file(pytester, "torch_models", "mlp", path, "--onnx-artifacts=artifacts")
        case = mine.with_name(f"{name}~1")
        assert f"artifacts: {case}" in text and (case / MANIFEST).is_file() and (case / "model.onnx").is_file()
    assert (mine / "model.onnx").read_bytes() == b"the user's own model"
    assert sorted(p.name for p in mine.iterdir()) == ["README.txt", "model.onnx"]
    assert (mine / "README.txt").read_text() == "the user's notes"
    assert sorted(p.name for p in (pytester.path / "artifacts").iterdir()) == sorted([name, f"{name}~1"])


NOISE_BOUND = """
import torch

def test_noise_bound(onnx_parity):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8)).eval()
    # no fixed tolerance: only the reference's own rounding error (once) separates ONNX Runtime from torch
    onnx_parity(model, torch.randn(4, 64), atol=0.0, rtol=0.0, noise_factor=1.0, examples=3, exporter="torchscript")
"""


def test_a_check_judged_with_noise_factor_1_fails_its_replay_too(pytester: pytest.Pytester) -> None:
    """Replay judges by every setting the verdict used: at the default noise factor (10) this case passes."""
    from pytest_onnxparity.replay import main

    pytester.makepyfile(test_noise=NOISE_BOUND)
    reprec = pytester.inline_run("--onnx-artifacts=arts", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "1 * noise)" in text, text
    (case,) = (pytester.path / "arts").iterdir()
    record = json.loads((case / "parity.json").read_text())
    assert record["noise_factor"] == 1.0 and record["variant"] is None
    assert main([str(case)]) == 1
    (case / "parity.json").write_text(json.dumps({**record, "noise_factor": 10.0}))
    assert main([str(case)]) == 0  # the check's own noise factor is what fails it


def test_strict_fails_a_check_that_passes_with_warnings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import torch

        class RareBranch(torch.nn.Module):
            def forward(self, x):
                if x.abs().sum() > 1e12:      # dynamo rejects this; TorchScript traces the usual branch
                    return x * 0
                return torch.tanh(x)

        def test_fallback(onnx_parity):
            report = onnx_parity(RareBranch().eval(), torch.randn(2, 3))
            assert report.passed and report.exporter == "torchscript"
            assert any("exported with the torchscript fallback because" in w for w in report.warnings)
        """
    )
    relaxed = pytester.inline_run("-p", "no:cacheprovider")
    relaxed.assertoutcome(passed=1)
    assert any("exported with the torchscript fallback" in w for w in parity_warnings(relaxed))
    strict = pytester.runpytest("--onnx-strict", "-p", "no:cacheprovider")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--onnx-strict*passed with warnings*", "*exported with the torchscript fallback*"])


AFFINE_ADAPTER = '''
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
from pytest_onnxparity.adapters import ExportResult


class Affine:
    """A numpy model: tanh(x @ w + b)."""
    def __init__(self, w, b, exported_bias=None):
        self.w, self.b = w, b
        self.exported_bias = b if exported_bias is None else exported_bias

    def __call__(self, x):
        return np.tanh(x @ self.w + self.b)


class PreparedAffine:
    name = "numpy"

    def __init__(self, model, example_inputs, options):
        self.model = model
        self.example = {"x": np.asarray(example_inputs, np.float32)}
        self.output_names, self.output_names_meaningful = ("y",), True
        self.int_high_hints, self.model_dynamic_axes, self.sequence_limit = (), {}, None

    def infer(self, feed):
        return {"y": self.model(feed["x"]).astype(np.float32)}

    def timed_call(self, feed):
        return (lambda: self.infer(feed)), "numpy"

    def export(self, path, dynamic_axes, options):
        w, b = self.model.w.astype(np.float32), self.model.exported_bias.astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Tanh", ["z"], ["y"])],
            "affine",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", w.shape[0]])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w.shape[1]])],
            [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
        return ExportResult("hand-built")

    def place(self, provider):
        return "cpu"

    def fingerprint(self):
        return None

    def versions(self):
        return {"numpy": np.__version__}

    def close(self):
        pass


def prepare(model, example_inputs, options):
    return PreparedAffine(model, example_inputs, options)
'''


def test_a_conftest_adds_an_adapter_through_the_hook(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(affine_adapter=AFFINE_ADAPTER)
    pytester.makeconftest(
        """
        def pytest_onnxparity_adapters():
            return [("numpy", lambda model: type(model).__name__ == "Affine", "affine_adapter")]
        """
    )
    pytester.makepyfile(
        """
        import numpy as np
        from affine_adapter import Affine

        rng = np.random.default_rng(0)
        w, b = rng.standard_normal((4, 3)), rng.standard_normal(3)

        def test_faithful(onnx_parity):
            report = onnx_parity(Affine(w, b), rng.standard_normal((2, 4)))
            assert report.passed and report.framework == "numpy" and report.exporter == "hand-built"

        def test_bias_off(onnx_parity):
            onnx_parity(Affine(w, b, exported_bias=b + 1e-3), rng.standard_normal((2, 4)))
        """
    )
    pytester.syspathinsert()
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=1)
    (text,) = failure_text(reprec).values()
    assert "values: output 'y'" in text
