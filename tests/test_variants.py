"""The models users ship: optimized, simplified, fp16 and int8 variants built from the one export, each checked
as its own item with a fitting metric; defects planted in real exports caught and named."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import failures_by_test

pytest.importorskip("onnxslim")

CNN_WITH_VARIANTS = """
import pytest
from sample_models.torch_models import build

@pytest.mark.onnx_parity(variants=("optimized", "simplified", "fp16", "int8-dynamic", "int8-static"))
def test_cnn(onnx_parity):
    model, example, options = build("cnn")
    onnx_parity(model, example, **options)
"""


def test_variants_are_items_of_one_export_and_the_healthy_ones_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cnn=CNN_WITH_VARIANTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--onnx-report=r.json")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "*test_cnn?cpu? PASSED*",
            "*test_cnn?cpu-optimized? PASSED*",
            "*test_cnn?cpu-simplified? PASSED*",
            "*test_cnn?cpu-fp16? PASSED*",
            "*test_cnn?cpu-int8-dynamic? PASSED*",
            "*test_cnn?cpu-int8-static? PASSED*",
            "*ONNX variants (size, median latency, worst metric over outputs, verdict)*",
            "model*provider*variant*size MB*cosine*SNR dB*top-1*top-5*margin*verdict",
            "test_cnn.py::test_cnn*cpu*int8-dynamic*0.9*PASS",
        ]
    )
    document = json.loads((pytester.path / "r.json").read_text())
    checks = {c["variant"]: c for c in document["checks"]}
    base = checks[None]
    assert base["export_origin"] == "exported", "the export runs once"
    for name in ("optimized", "simplified", "fp16", "int8-dynamic", "int8-static"):
        assert checks[name]["export_origin"] == "reused", f"{name} is built from the session's one export"
        assert checks[name]["exporter"].startswith(base["exporter"] + ", then ")
        assert checks[name]["onnx_path"] != base["onnx_path"]
    assert "optimized_model_filepath, level extended" in checks["optimized"]["exporter"]
    assert "onnxslim" in checks["simplified"]["exporter"] and "quantize_dynamic" in checks["int8-dynamic"]["exporter"]
    assert "calibrated on 16 generated input sets" in checks["int8-static"]["exporter"]
    (fp16,) = checks["fp16"]["outputs"]
    assert (fp16["atol"], fp16["rtol"]) == (1e-2, 1e-2) and "f16 tolerances" in checks["fp16"]["tolerance_reason"]
    for lossless in ("optimized", "simplified"):  # the normal element-wise rule, with the float32 defaults
        (out,) = checks[lossless]["outputs"]
        assert (out["atol"], out["rtol"], out["limits"], out["rule"]) == (1e-6, 1e-5, {}, out["rule"])
        assert out["tolerance_used"] < 1 and out["metrics"]["cosine"] > 0.99999
    (int8,) = checks["int8-dynamic"]["outputs"]
    assert int8["limits"] == {"cosine": 0.99, "snr_db": 20.0, "top1": 0.9, "top5": 0.99}
    assert int8["metrics"]["cosine"] >= 0.99 and int8["metrics"]["snr_db"] >= 20 and int8["metrics"]["top1"] >= 0.9
    assert checks["int8-dynamic"]["onnx_size_bytes"] < checks["fp16"]["onnx_size_bytes"] < base["onnx_size_bytes"]
    assert checks["int8-static"]["passed"] and checks["int8-static"]["outputs"][0]["metrics"]["cosine"] >= 0.99
    rows = {r["variant"]: r for r in document["variants"]}
    assert set(rows) == {"export", "optimized", "simplified", "fp16", "int8-dynamic", "int8-static"}
    assert rows["int8-dynamic"]["verdict"] == "PASS" and rows["int8-dynamic"]["metrics"]["cosine"] >= 0.99


OUTLIER = """
import numpy as np, onnx, pytest
from onnx import numpy_helper
from sample_models.torch_models import build
from pytest_onnxparity import check

def weight(graph, name, edit):
    (tensor,) = [t for t in graph.initializer if t.name == name]
    tensor.CopyFrom(numpy_helper.from_array(edit(numpy_helper.to_array(tensor).copy()).astype(np.float32), name))

def scale_row(k):
    def edit(w):
        w[0] *= k
        return w
    return edit

def outlier_file(tmp_path):
    # An activation outlier, planted in the exported graph: hidden unit 0 of net.0 computes k times its value and
    # net.2 reads it divided by k. The function is the same (float32 rounds it alike), but a per-tensor int8
    # scale of that activation is set by the outlier, and the other 255 units round to a level or two.
    model, example, _ = build("mlp")
    report = check(model, example, workdir=tmp_path / "export", examples=0)
    graph_model = onnx.load(report.onnx_path)
    k = 200.0
    weight(graph_model.graph, "net.0.weight", scale_row(k))
    weight(graph_model.graph, "net.0.bias", lambda b: np.concatenate([np.abs(b[:1]) * k + k, b[1:]]))
    weight(graph_model.graph, "net.2.weight", lambda w: np.concatenate([w[:, :1] / k, w[:, 1:]], axis=1))
    path = tmp_path / "outlier.onnx"
    onnx.save(graph_model, str(path))
    with __import__("torch").no_grad():  # the framework model with the same unit-0 bias (|b| + 1)
        model.net[0].bias[0] = abs(model.net[0].bias[0]) + 1
    return model, example, str(path)

@pytest.mark.onnx_parity(variants=("int8-dynamic",))
def test_outlier(onnx_parity, tmp_path):
    model, example, path = outlier_file(tmp_path)
    onnx_parity(model, example, onnx_model=path)
"""


def test_int8_with_a_planted_activation_outlier_fails_on_cosine_naming_the_layer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outlier=OUTLIER)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--onnx-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_outlier?cpu? PASSED*", "*test_outlier?cpu-int8-dynamic? FAILED*"])
    text = result.stdout.str()
    assert "metrics: output 'output': below the variant's thresholds: cosine " in text and "< 0.99" in text, text
    assert "first divergence: module 'net.2' (torch.nn.Linear)" in text and "int8-dynamic variant departs" in text
    (failed,) = [c for c in json.loads((pytester.path / "r.json").read_text())["checks"] if not c["passed"]]
    assert failed["failure"]["kind"] == "metrics" and failed["first_divergence"]["module"] == "net.2"
    assert failed["failure"]["figures"][0]["metrics"]["cosine"] < 0.9


def test_fp16_overflow_fails_naming_the_overflowing_node(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch
        from tests.models import SumOfSquaresNorm

        @pytest.mark.onnx_parity(variants=("fp16",))
        @pytest.mark.parametrize("localize", [True, False])
        def test_norm(onnx_parity, localize):
            onnx_parity(SumOfSquaresNorm().eval(), torch.randn(2, 64), localize=localize)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2, failed=2)  # the export passes; its fp16 variant does not, localized or not
    for failure in result.stdout.str().split("_ test_norm[")[1:]:
        assert "fp16 overflow at node 'node_sum" in failure and "(ReduceSum)" in failure, failure
        assert "past float16's largest finite value 65504" in failure, failure


def test_a_users_own_variant_file_is_judged_by_the_metric_it_names(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
        from sample_models.torch_models import build
        from pytest_onnxparity import check

        @pytest.fixture
        def int8_file(tmp_path):  # as ONNX Runtime's quantization docs do it: pre-process, then quantize
            model, example, _ = build("cnn")
            report = check(model, example, workdir=tmp_path / "export", examples=0)
            pre, int8 = str(tmp_path / "cnn.pre.onnx"), str(tmp_path / "cnn.int8.onnx")
            quant_pre_process(report.onnx_path, pre)
            quantize_dynamic(pre, int8, weight_type=QuantType.QInt8)
            return int8

        def test_as_int8(onnx_parity, int8_file):
            model, example, _ = build("cnn")
            report = onnx_parity(model, example, onnx_model=int8_file, variant="int8-dynamic")
            assert report.variant == "int8-dynamic" and report.outputs[0].metrics["cosine"] >= 0.99

        def test_as_if_exact(onnx_parity, int8_file):
            model, example, _ = build("cnn")
            onnx_parity(model, example, onnx_model=int8_file)

        def test_with_a_stricter_threshold(onnx_parity, int8_file):
            model, example, _ = build("cnn")
            strict = {"int8-dynamic": {"output": {"snr_db": 90.0}}}
            onnx_parity(model, example, onnx_model=int8_file, variant="int8-dynamic", variant_metrics=strict)
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=2)
    failures = failures_by_test(reprec)
    assert "elements differ beyond tolerance" in failures["test_as_if_exact"]
    assert "below the variant's thresholds: snr_db " in failures["test_with_a_stricter_threshold"]
    assert "< 90" in failures["test_with_a_stricter_threshold"]


def test_variants_from_the_command_line_the_ini_file_and_a_call(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nonnx_parity_variants = optimized\n")
    pytester.makepyfile(
        """
        from sample_models.torch_models import build

        def test_mlp(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, **options)

        def test_call(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, variants=("fp16",), **options)
        """
    )
    from_ini = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    from_ini.stdout.fnmatch_lines(["*test_mlp[[]cpu[]]", "*test_mlp[[]cpu-optimized[]]"])
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--onnx-variants=fp16", "--onnx-report=r.json")
    result.assert_outcomes(passed=4)  # the command line over the ini file: [cpu], [cpu-fp16], for each test
    result.stdout.fnmatch_lines(["*test_mlp?cpu-fp16? PASSED*", "*test_call?cpu-fp16? PASSED*"])
    checks = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert sorted((c["nodeid"].split("::")[1], c["variant"] or "") for c in checks) == [
        ("test_call[cpu-fp16]", "fp16"),
        ("test_call[cpu]", ""),
        ("test_mlp[cpu-fp16]", "fp16"),
        ("test_mlp[cpu]", ""),
    ], "a variant named on the call and collected as an item is checked once, in its item"
    inline = pytester.runpytest(
        "-p", "no:cacheprovider", "-v", "--onnx-variants=optimized", "--onnx-report=i.json", "--junitxml=j.xml"
    )
    inline.assert_outcomes(passed=4)
    checks = json.loads((pytester.path / "i.json").read_text())["checks"]
    call = sorted(c["variant"] or "" for c in checks if c["nodeid"].endswith("test_call[cpu]"))
    assert call == ["", "fp16"], "a variant named on the call only is checked in the test's own item"
    import xml.etree.ElementTree as ET

    case = next(
        c for c in ET.parse(pytester.path / "j.xml").getroot().iter("testcase") if c.get("name") == "test_call[cpu]"
    )
    names = [p.get("name") for p in case.iter("property")]
    assert len(names) == len(set(names)) and {"onnx_parity.passed", "onnx_parity[fp16].passed"} <= set(names)
    bad = pytester.runpytest("-p", "no:cacheprovider", "--onnx-variants=int4")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--onnx-variants/onnx_parity_variants: 'int4' is not valid*unknown variant(s)*int4*"])


def test_a_missing_simplifier_is_a_skip_that_names_the_package(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # as if it were not installed
    pytester.makepyfile(
        """
        import pytest
        from sample_models.torch_models import build

        @pytest.mark.onnx_parity(variants=("simplified",))
        def test_mlp(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, **options)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*the simplified variant needs onnxslim: pip install onnxslim*"])


def test_each_variant_gets_benchmark_items(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(
        """
        import pytest
        from sample_models.torch_models import build

        @pytest.mark.onnx_parity(variants=("int8-dynamic",), batch_sizes=(1, 4))
        def test_mlp(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, **options)
        """
    )
    args = ("--benchmark-max-time=0.05", "--benchmark-min-rounds=3", "-p", "no:cacheprovider")
    result = pytester.runpytest("--onnx-benchmark", "-v", "--onnx-report=r.json", "--onnx-benchmark-plot=v.png", *args)
    result.assert_outcomes(passed=8)  # 2 parity items, then framework, cpu, cpu-int8-dynamic at batch 1 and 4
    result.stdout.fnmatch_lines(["*test_mlp?bench-cpu-int8-dynamic-b4? PASSED*"])
    rows = {r["variant"]: r for r in json.loads((pytester.path / "r.json").read_text())["variants"]}
    assert set(rows["int8-dynamic"]["latency_ms"]) == {"1", "4"} and set(rows["export"]["latency_ms"]) == {"1", "4"}
    assert (pytester.path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_the_python_api_checks_one_variant_per_call(tmp_path) -> None:
    from pytest_onnxparity import OnnxParityUsageError, check
    from sample_models.torch_models import build

    model, example, _ = build("mlp")
    report = check(model, example, workdir=tmp_path, variant="fp16", examples=2)
    assert report.passed and report.variant == "fp16" and report.onnx_path.endswith("fp16/model.onnx")
    assert report.outputs[0].metrics["cosine"] > 0.999 and report.tolerance_reason.startswith("float32 outputs get f16")
    with pytest.raises(OnnxParityUsageError, match="once per variant"):
        check(model, example, workdir=tmp_path, variants=("fp16", "int8-dynamic"))


def test_a_variant_that_crashes_onnx_runtime_fails_its_item_and_the_session_goes_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime 1.24 dies with SIGSEGV creating a session (optimizations on) for the fp16 variant of the sample
    LSTM: the variant is opened in a child process first, so only that item fails, saying so."""
    from tests.conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        """
        import pytest
        from sample_models.torch_models import build

        @pytest.mark.onnx_parity(variants=("fp16",))
        def test_lstm(onnx_parity):
            model, example, options = build("lstm")
            onnx_parity(model, example, **options)

        def test_after():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--onnx-benchmark", "--benchmark-max-time=0.05"
    )
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*test_lstm?cpu? PASSED*", "*test_after PASSED*"])
    result.stdout.fnmatch_lines(["*test_lstm?cpu-fp16? *"])  # the variant's item ran, whatever its verdict
    if result.parseoutcomes().get("failed"):  # this ONNX Runtime crashes on the graph: named, in that item only
        result.stdout.fnmatch_lines(["*the fp16 variant * does not run in ONNX Runtime * on cpu: *SIGSEGV*"])
        result.stdout.fnmatch_lines(["*test_lstm*cpu*fp16*ERROR"])  # in the variant table too, once
        rows = [line for line in result.outlines if re.search(r"::test_lstm\s+cpu\s+fp16\s.*ERROR$", line.rstrip())]
        assert len(rows) == 1, rows  # the benchmark items' errors are not rows of their own
        failed = [line for line in result.outlines if line.startswith("FAILED")]
        assert len(failed) == result.parseoutcomes()["failed"] and all("fp16" in line for line in failed), failed


def test_an_int8_margin_is_the_pooled_top1_not_the_lowest_input_set_on_the_way() -> None:
    """Top-1 agreement decides pooled over every row: one input set of 6 rows with 5 agreeing (0.83, 167% of a 0.9
    threshold's allowance on its own) then 94 agreeing rows is 99% agreement, 10% of the allowance: PASS, 10%."""
    from pytest_onnxparity.judge.figures import OutputFigures

    limits = {"cosine": 0.99, "snr_db": 20.0, "top1": 0.9}
    merged = OutputFigures("logits")
    for top1, rows in ((5 / 6, 6), (1.0, 94)):
        one = OutputFigures("logits", metrics={"cosine": 0.999, "snr_db": 40.0, "top1": top1}, rows=rows)
        one.limits, one.rule, one.tolerance_used = dict(limits), "metrics", 0.1  # cosine's share: (1-0.999)/(1-0.99)
        merged.merge(one)
    assert merged.metrics["top1"] == pytest.approx(0.99)
    assert merged.tolerance_used == pytest.approx(0.1)  # max(cosine 0.1, pooled top-1 (1-0.99)/(1-0.9) = 0.1)
    worse = OutputFigures("logits", metrics={"cosine": 0.999, "snr_db": 40.0, "top1": 0.0}, rows=20)
    worse.limits, worse.rule, worse.tolerance_used = dict(limits), "metrics", 0.1
    merged.merge(worse)  # 99 of 120 rows agree: 0.825 < 0.9, past the allowance
    assert merged.tolerance_used == pytest.approx((1 - 99 / 120) / 0.1)


def test_the_variant_table_prints_rows_read_back_from_the_json_report() -> None:
    """benchmarks/variants.py prints the table from the JSON report: non-finite margins come back as 'inf' and
    batch sizes as string keys."""
    from pytest_onnxparity.report import summary

    rows = [
        {
            "model": "m",
            "provider": "cpu",
            "variant": "export",
            "size_bytes": 2_000_000,
            "latency_ms": {"1": 0.5, "17": 2.0, "3": 1.0},
            "metrics": {},
            "margin": 0.25,
            "verdict": "PASS",
        },
        {
            "model": "m",
            "provider": "cpu",
            "variant": "int8-dynamic",
            "size_bytes": 600_000,
            "latency_ms": {"1": 0.4},
            "metrics": {"cosine": 0.9, "snr_db": 9.5},
            "margin": "inf",
            "verdict": "FAIL (metrics)",
        },
    ]
    lines = summary.variant_lines(json.loads(json.dumps(rows)))
    assert "ms b1  ms b3  ms b17" in lines[0]  # batch sizes in numeric order
    assert lines[1].split()[-2:] == ["25%", "PASS"]
    assert "0.90000" in lines[2] and lines[2].split()[-3:] == ["-", "FAIL", "(metrics)"]


def test_int8_judges_top_k_on_class_scores_only_so_a_dense_prediction_head_passes(tmp_path) -> None:
    """A depth/segmentation-like head (convs, then bilinear upsampling: smooth along width) quantized int8-static
    keeps cosine 0.999 and SNR 28 dB; an argmax along its width axis flips on 16% of rows. Top-k is for
    (rows, classes) outputs, or outputs the user names it for, so the healthy variant passes."""
    import torch

    from pytest_onnxparity import check

    class Dense(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 3, padding=1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.interpolate(self.net(x), scale_factor=8, mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    model, example = Dense().eval(), torch.randn(2, 3, 8, 8)
    report = check(model, example, variant="int8-static", workdir=tmp_path / "default")
    assert report.passed, report.failure
    assert set(report.outputs[0].metrics) == {"cosine", "snr_db"} and report.outputs[0].metrics["cosine"] > 0.99
    named = {"int8-static": {"output": {"top1": 0.9}}}  # the user says its last axis is classes: judged
    report = check(model, example, variant="int8-static", variant_metrics=named, workdir=tmp_path / "named")
    assert not report.passed and report.failure.kind == "metrics" and "top1" in report.failure.message


def test_top_k_counts_reference_ties_as_agreement_and_an_all_zero_reference_has_no_cosine() -> None:
    import numpy as np

    from pytest_onnxparity.judge import metrics

    ref = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 1.0]], np.float32)
    got = np.array([[0.9, 1.1, 0.0], [0.0, 1.9, 2.1], [0.0, 3.0, 1.0]], np.float32)
    found, rows = metrics.measure(ref, got)
    assert rows == 3 and found["top1"] == pytest.approx(2 / 3)  # two ties agree, the flip in row 3 does not
    found, rows = metrics.measure(np.zeros((2, 3), np.float32), np.full((2, 3), 1e-3, np.float32))
    assert "cosine" not in found and "snr_db" not in found and found["top1"] == 1.0  # nothing to measure against
    assert metrics.measure(np.zeros(4, np.float32), np.zeros(4, np.float32))[0] == {"cosine": 1.0, "snr_db": np.inf}
    assert "top1" not in metrics.thresholds("int8-dynamic", "hidden", {}, ndim=3)
    assert metrics.thresholds("int8-dynamic", "logits", {}, ndim=2)["top1"] == 0.9
    off = metrics.thresholds("int8-dynamic", "embedding", {"int8-dynamic": {"embedding": {"top1": 0, "top5": 0}}})
    assert set(off) == {"cosine", "snr_db"}  # a (rows, features) embedding opts out of top-k


def test_an_int8_variant_the_quantizer_left_in_float32_is_a_warning_not_a_silent_pass(tmp_path) -> None:
    """quantize_dynamic quantizes MatMul/Conv/Gather/...: a model of element-wise ops comes back unchanged, so its
    'int8' check would only repeat the export's. Said, and a failure under strict."""
    import torch

    from pytest_onnxparity import check
    from sample_models.torch_models import build

    class Elementwise(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x) * 2 + 1

    report = check(Elementwise().eval(), torch.randn(2, 8), variant="int8-dynamic", workdir=tmp_path / "e")
    assert any("has no quantized node" in w for w in report.warnings), report.warnings
    model, example, options = build("mlp")
    report = check(model, example, variant="int8-dynamic", workdir=tmp_path / "mlp", **options)
    assert not any("quantized node" in w for w in report.warnings)


def test_int8_dynamic_of_a_tied_square_linear_is_caught_as_onnx_runtime_quantizes_it_wrong(tmp_path) -> None:
    """A real defect no one planted: onnxruntime 1.24's quantize_dynamic turns Gemm(transB=1) into MatMulInteger;
    when two Gemms share one square weight (a tied Linear), one of them gets the weight untransposed: x @ W, not
    x @ W.T (with a non-square weight the graph does not even load). The sample encoder's out_proj hits the same.
    Judged against ONNX Runtime's own run of the two graphs, so the test stays true once the quantizer is fixed."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from pytest_onnxparity import check

    class Tied(torch.nn.Module):
        def __init__(self, tied: bool) -> None:
            super().__init__()
            self.block = torch.nn.Linear(16, 16)
            self.again = self.block if tied else torch.nn.Linear(16, 16)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.again(torch.relu(self.block(x)))))

    torch.manual_seed(0)
    x = torch.randn(3, 16)
    untied = check(Tied(False).eval(), x, variant="int8-dynamic", workdir=tmp_path / "untied")
    assert untied.passed, untied.failure
    report = check(Tied(True).eval(), x, variant="int8-dynamic", workdir=tmp_path / "tied")
    feed = {"x": x.numpy()}
    export, variant = (
        ort.InferenceSession(str(p)).run(None, feed)[0] for p in (tmp_path / "tied" / "model.onnx", report.onnx_path)
    )
    cosine = float((export * variant).sum() / np.linalg.norm(export) / np.linalg.norm(variant))
    if cosine > 0.99:  # this ONNX Runtime quantizes tied weights right: nothing to catch
        assert report.passed, report.failure
        return
    assert not report.passed and report.failure.kind == "metrics", report.failure
    divergence = report.first_divergence
    assert divergence["module"] == "block" and divergence["op_types"] == ["Gemm"], divergence["line"]
    assert "cosine" in divergence["stage_detail"] and "allowed" not in divergence["line"]


def test_a_non_finite_value_in_an_int8_graph_is_not_blamed_on_float16() -> None:
    """quantize_static calibrated on a -inf attention mask computes a NaN zero point (the sample encoder's
    int8-static variant): the departure names the value without float16's reasons."""
    import numpy as np

    from pytest_onnxparity.locate.fp16 import overflow

    base, mine = np.array([1.0, -3.0e38, 2.0], np.float32), np.array([1.0, np.nan, 2.0], np.float32)
    int8 = overflow("scores", base, mine, [], {}, {}, fp16=False)
    assert int8 is not None and "1 position(s)" in int8 and "float16" not in int8 and "scale or zero point" in int8
    assert "past float16's largest finite value" in (overflow("scores", base, mine, [], {}, {}) or "")


def test_int8_static_calibrates_each_graph_input_with_its_own_tensor_when_the_export_dropped_one(tmp_path) -> None:
    """The TorchScript exporter drops an input the model ignores: the graph takes (x, y) of the model's
    (x, unused, y). Calibration data follows the interface match, not positions (y got unused's (2, 3) tensor)."""
    import torch

    from pytest_onnxparity import check

    class Dropped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 4), torch.nn.Linear(6, 4)

        def forward(self, x: torch.Tensor, unused: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    torch.manual_seed(0)
    example = (torch.randn(2, 8), torch.randn(2, 3), torch.randn(2, 6))
    report = check(Dropped().eval(), example, variant="int8-static", exporter="torchscript", workdir=tmp_path)
    assert any("does not take input(s) ['unused']" in w for w in report.warnings)
    assert report.outputs[0].metrics["cosine"] > 0.95, report.outputs[0].metrics  # built, calibrated, judged
