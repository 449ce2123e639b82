"""Never touch user data, never crash the session, never ignore an option (one test per hazard)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, failures_by_test, parity_warnings

USER_DATA = """
import copy, torch
from tests.models import export_file

class InPlace(torch.nn.Module):
    '''Writes into its input and counts its calls: both must stay invisible to the user.'''
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 4)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
    def forward(self, x):
        self.calls += 1
        x.mul_(2)
        return self.fc(x) + 1

class ReluInPlace(torch.nn.Module):
    def forward(self, x):
        torch.relu_(x)
        return x * 1

class Times(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k
    def forward(self, x):
        return x * self.k

class Noisy(torch.nn.Module):
    def forward(self, x):
        return x + 1e-3 * torch.rand_like(x)

class Bf16(torch.nn.Module):
    def __init__(self, k=2.0):
        super().__init__()
        self.k = k
    def forward(self, x):
        return (x * self.k).to(torch.bfloat16)

def test_user_tensor_and_model_state_are_byte_identical_after_a_check(onnx_parity):
    model, x = InPlace().eval(), torch.randn(2, 4)
    before_x, before_state = x.clone(), copy.deepcopy(model.state_dict())
    report = onnx_parity(model, x)
    assert report.passed and report.examples > 20
    assert x.numpy().tobytes() == before_x.numpy().tobytes()
    assert all(torch.equal(before_state[k], v) for k, v in model.state_dict().items())

def test_an_in_place_model_against_a_graph_without_its_relu_fails(onnx_parity, tmp_path):
    path = export_file(Times(1.0), torch.randn(2, 4), tmp_path / "no_relu.onnx")
    onnx_parity(ReluInPlace(), torch.randn(2, 4), onnx_model=path)

def test_a_model_that_is_not_deterministic_fails_with_that_reason(onnx_parity):
    onnx_parity(Noisy(), torch.randn(2, 4))

def test_bf16_outputs_are_compared(onnx_parity):
    report = onnx_parity(Bf16().eval(), torch.randn(2, 4))
    assert report.passed and report.examples > 20 and report.outputs[0].atol == 1e-2

def test_a_bf16_graph_with_a_wrong_constant_fails(onnx_parity, tmp_path):
    path = export_file(Bf16(2.5), torch.randn(2, 4), tmp_path / "bf16.onnx")
    onnx_parity(Bf16(2.0), torch.randn(2, 4), onnx_model=path)
"""


def test_user_data_in_place_ops_state_determinism_and_bf16(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_data=USER_DATA)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2, failed=3)
    texts = failures_by_test(reprec)
    assert "values: output 'output'" in texts["test_an_in_place_model_against_a_graph_without_its_relu_fails"]
    assert "the model is not deterministic" in texts["test_a_model_that_is_not_deterministic_fails_with_that_reason"]
    assert "values: output 'output'" in texts["test_a_bf16_graph_with_a_wrong_constant_fails"]


def test_colliding_ids_leave_separate_artifact_directories(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    long = "a" * 120
    pytester.makepyfile(
        f"""
        import pytest, torch
        from tests.models import export_file

        class Times(torch.nn.Module):
            def __init__(self, k):
                super().__init__()
                self.k = k
            def forward(self, x):
                return x * self.k

        @pytest.mark.parametrize("k", ["x y", "x/y", "x:y", "{long}1", "{long}2"])
        def test_f(onnx_parity, k, tmp_path):
            path = export_file(Times(3.0), torch.randn(2, 3), tmp_path / "m.onnx")
            onnx_parity(Times(2.0), torch.randn(2, 3), onnx_model=path, examples=0)
        """
    )
    result = pytester.runpytest_subprocess(
        "--onnx-artifacts=arts", "--onnx-report=r.json", "-n", "2", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=5)
    checks = json.loads((pytester.path / "r.json").read_text())["checks"]
    directories = {c["artifacts"] for c in checks}
    assert len(directories) == 5 and all(os.path.isdir(d) for d in directories)
    for check in checks:
        assert check["nodeid"] in (pytester.path / check["artifacts"] / "README.txt").read_text()


def test_collect_only_leaves_an_existing_report_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import torch\n\ndef test_x(onnx_parity):\n    onnx_parity(torch.nn.Linear(2, 2), torch.zeros(2, 2))\n"
    )
    (pytester.path / "old.json").write_text('{"checks": ["from an earlier run"]}')
    pytester.runpytest("--collect-only", "--onnx-report=old.json", "-p", "no:cacheprovider")
    assert "from an earlier run" in (pytester.path / "old.json").read_text()


def test_the_repro_line_survives_a_hostile_test_id_in_a_real_shell(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch
        from tests.models import export_file

        @pytest.mark.parametrize("name", ["it's $(touch PWNED) `touch PWNED2`"])
        def test_hostile(onnx_parity, name, tmp_path):
            path = export_file(torch.nn.Identity(), torch.randn(2, 3), tmp_path / "m.onnx")
            onnx_parity(torch.nn.ReLU(), torch.randn(2, 3), onnx_model=path, examples=0)
        """
    )
    pytester.inline_run("--onnx-report=r.json", "-p", "no:cacheprovider").assertoutcome(failed=1)
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["repro"].startswith("pytest ")
    env = {
        **os.environ,
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    rerun = subprocess.run(
        ["bash", "-c", check["repro"] + " -p no:cacheprovider"],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert not (pytester.path / "PWNED").exists() and not (pytester.path / "PWNED2").exists()
    assert rerun.returncode == 1 and "1 failed" in rerun.stdout, rerun.stdout + rerun.stderr


def test_the_summary_formats_any_figure() -> None:
    from pytest_onnxparity.report.summary import summary_lines

    odd = {"name": "y", "max_abs_diff": "inf", "atol": "inf", "rtol": 0.1, "tolerance_used": "nan"}
    lines = summary_lines(
        [
            {"nodeid": "t::a", "provider": "cpu", "passed": True, "examples": 3, "outputs": [odd]},
            {"nodeid": "t::b", "provider": "cpu", "passed": False, "status": "error", "error": "boom"},
        ]
    )
    assert "inf/0.1" in "\n".join(lines) and any(line.rstrip().endswith("ERROR") for line in lines)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--onnx-report=afile/rep.json", "cannot write*afile*is a file"),
        ("--onnx-report=adir", "*adir is a directory; pass a file path*"),
        ("--onnx-artifacts=afile", "*afile is a file; pass a directory*"),
    ],
)
def test_unusable_paths_are_usage_errors(pytester: pytest.Pytester, arg: str, message: str) -> None:
    (pytester.path / "afile").write_text("a file")
    (pytester.path / "adir").mkdir()
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(arg, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_writers_that_fail_at_the_end_do_not_hide_the_results(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pathlib, torch
        from tests.models import export_file

        def test_breaks_the_paths(onnx_parity, tmp_path):
            pathlib.Path("out").write_text("now a file where the report's directory goes")
            pathlib.Path("arts").write_text("and where the artifacts go")
            path = export_file(torch.nn.Identity(), torch.randn(2, 3), tmp_path / "m.onnx")
            onnx_parity(torch.nn.ReLU(), torch.randn(2, 3), onnx_model=path, examples=0)
        """
    )
    result = pytester.runpytest("--onnx-report=out/r.json", "--onnx-artifacts=arts", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ParityMismatch*",
            "*could not save the artifacts under*",
            "*ONNX parity summary*",
            "*test_breaks_the_paths*FAIL conversion (values)*",
            "onnx_parity: --onnx-report: could not write*",
        ]
    )


IGNORED = """
import pytest, torch

class Two(torch.nn.Module):
    def forward(self, x, ids):
        return {"out": x * 2, "count": ids.sum(-1)}

def example():
    return (torch.randn(2, 3), torch.randint(0, 5, (2, 3)))

@pytest.mark.onnx_parity(1e-3)
def test_positional_marker(onnx_parity):
    onnx_parity(Two(), example())

def test_misspelled_output(onnx_parity):
    onnx_parity(Two(), example(), atol={"outt": 1e-3})

def test_misspelled_variant_metrics_output(onnx_parity):
    onnx_parity(Two(), example(), variant_metrics={"int8-dynamic": {"outt": {"cosine": 0.9}}})

def test_unknown_input_range(onnx_parity):
    onnx_parity(Two(), example(), input_ranges={"idz": (0, 5)})

def test_examples_past_the_cap(onnx_parity):
    onnx_parity(Two(), example(), examples=10**6)

def test_a_batch_past_the_memory_budget(onnx_parity):
    onnx_parity(Two(), example(), batch_sizes=(1, 10**9))

def test_opset_the_exporter_cannot_write(onnx_parity):
    report = onnx_parity(Two(), example(), opset=7, examples=0)
    assert any("opset=7 was asked for but the exporter wrote opset" in w for w in report.warnings)
"""


def test_options_are_applied_or_refused_never_ignored(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ignored=IGNORED)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=6)
    texts = failures_by_test(reprec)
    assert "the marker takes keyword options only" in texts["test_positional_marker"]
    assert "atol/rtol name output(s) ['outt'] that the model does not return" in texts["test_misspelled_output"]
    assert (
        "variant_metrics names output(s) [\"int8-dynamic: 'outt'\"]" in texts["test_misspelled_variant_metrics_output"]
    )
    assert "input_ranges names input(s) ['idz']" in texts["test_unknown_input_range"]
    assert "more is a CI hang" in texts["test_examples_past_the_cap"]
    assert "(the budget is" in texts["test_a_batch_past_the_memory_budget"]
    assert any("opset=7 was asked for" in w for w in parity_warnings(reprec))


ODD_MODELS = """
import pytest, torch
from tests.models import export_file
from hypothesis import given, settings, strategies as st

class Scale(torch.nn.Module):
    def forward(self, x):
        return x * 2

class Chunks(torch.nn.Module):
    def forward(self, x):
        return list(x.split(2))           # as many outputs as the batch has pairs

def test_meta_device_model(onnx_parity):
    with torch.device("meta"):
        model = torch.nn.Linear(3, 2)
    onnx_parity(model, torch.zeros(2, 3))

def test_sparse_input(onnx_parity):
    onnx_parity(Scale(), torch.eye(3).to_sparse())

def test_complex_input(onnx_parity):
    onnx_parity(Scale(), torch.randn(2, 3, dtype=torch.complex64))

def test_scalar_input(onnx_parity):
    assert onnx_parity(Scale(), torch.tensor(0.5)).passed

def test_float64_example_with_a_float32_graph(onnx_parity, tmp_path):
    path = export_file(Scale(), torch.randn(2, 3), tmp_path / "f32.onnx")
    onnx_parity(Scale(), torch.randn(2, 3, dtype=torch.float64), onnx_model=path)

def test_variable_length_output(onnx_parity):
    onnx_parity(Chunks(), torch.randn(4, 3), exporter="torchscript")

@settings(max_examples=2, deadline=None)
@given(st.integers(1, 3))
def test_inside_given(onnx_parity, k):
    onnx_parity(Scale(), torch.randn(2, k))
"""


def test_odd_models_and_inputs_get_a_clear_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_odd=ODD_MODELS)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore")
    reprec.assertoutcome(passed=1, failed=6)
    texts = failures_by_test(reprec)
    assert "parameters on the meta device" in texts["test_meta_device_model"]
    assert "ONNX inputs are dense" in texts["test_sparse_input"]
    assert "ONNX Runtime has no complex tensors" in texts["test_complex_input"]
    f64 = texts["test_float64_example_with_a_float32_graph"]
    assert "takes input 'x' as float32 but the model takes float64" in f64 and "half-precision" not in f64
    assert "an output structure that depends on the input" in texts["test_variable_length_output"]
    assert "onnx_parity cannot be used in a hypothesis @given test" in texts["test_inside_given"]
    assert all("INTERNALERROR" not in t for t in texts.values())


def test_ini_paths_resolve_against_the_rootdir_and_home_expands(pytester: pytest.Pytester, tmp_path) -> None:
    pytester.makeini("[pytest]\nonnx_parity_report = reports/parity.json\n")
    sub = pytester.mkdir("sub")
    # a test module full of constants: hypothesis reads them and caches them in ./.hypothesis unless kept away
    (sub / "test_x.py").write_text(
        "import torch\n\nSCALE, SHIFT, LIMIT = 3.25, 17, 1234\n\ndef test_x(onnx_parity):\n"
        "    onnx_parity(torch.nn.Linear(2, 2).eval(), torch.zeros(2, 2) + SHIFT, examples=50)\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    pytest_script = shutil.which("pytest", path=os.path.dirname(sys.executable)) or "pytest"
    subprocess.run(
        [pytest_script, "test_x.py", "-p", "no:cacheprovider"], cwd=sub, env=env, check=True, capture_output=True
    )
    assert (pytester.path / "reports" / "parity.json").is_file() and not (sub / "reports").exists()
    subprocess.run(
        [pytest_script, "test_x.py", "-p", "no:cacheprovider", "--onnx-report=~/home.json"],
        cwd=sub,
        env=env,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "home.json").is_file() and not (sub / "~").exists()
    assert not (sub / ".hypothesis").exists() and not (pytester.path / ".hypothesis").exists()
