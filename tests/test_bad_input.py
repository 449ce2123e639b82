"""Bad input fails that one test with a specific message: never an INTERNALERROR, never a silent pass."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.conftest import check_planted_file, failure_text, parity_warnings

BAD_INPUTS = """
import pytest, torch
from sample_models.torch_models import build

class Broken(torch.nn.Module):
    def forward(self, x):
        return x @ torch.ones(3, 3)          # the example has 4 features

class Branchy(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:                      # data-dependent Python branch
            return x * 2
        return -x

def test_model_raises_on_its_example(onnx_parity):
    onnx_parity(Broken(), torch.randn(2, 4))

def test_not_a_model(onnx_parity):
    onnx_parity(lambda x: x, torch.randn(2, 4))

def test_export_fails(onnx_parity):
    onnx_parity(Branchy(), torch.rand(2, 4), exporter="dynamo")

def test_missing_onnx_file(onnx_parity):
    model, example, _ = build("mlp")
    onnx_parity(model, example, onnx_model="does/not/exist.onnx")

def test_not_an_onnx_file(onnx_parity, tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf")
    model, example, _ = build("mlp")
    onnx_parity(model, example, onnx_model=str(path))

def test_unknown_option(onnx_parity):
    model, example, _ = build("mlp")
    onnx_parity(model, example, atoll=1e-3)

@pytest.mark.onnx_parity(batch_sizes="many")
def test_bad_marker_value(onnx_parity):
    model, example, _ = build("mlp")
    onnx_parity(model, example)

def test_input_names_count(onnx_parity):
    model, example, _ = build("mlp")
    onnx_parity(model, example, input_names=["a", "b"])

def test_example_of_wrong_type(onnx_parity):
    model, _, _ = build("mlp")
    onnx_parity(model, [[0.0] * 784])

def test_after_all_the_errors_a_healthy_check_still_runs(onnx_parity):
    model, example, _ = build("mlp")
    assert onnx_parity(model, example).passed
"""

EXPECTED = {
    "test_model_raises_on_its_example": "the model raised on its own example_inputs",
    "test_not_a_model": "cannot check an object of type",
    "test_export_fails": "torch.onnx.export failed",
    "test_missing_onnx_file": "does/not/exist.onnx' does not exist",
    "test_not_an_onnx_file": "is not an ONNX model",
    "test_unknown_option": "unknown option(s) 'atoll'. Valid options: ",
    "test_bad_marker_value": "onnx_parity option 'batch_sizes': got 'many'",
    "test_input_names_count": "input_names has 2 name(s)",
    "test_example_of_wrong_type": "example input 'x' is a list",
}


def test_each_bad_input_fails_its_own_test_with_a_specific_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad=BAD_INPUTS)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=len(EXPECTED))
    texts = failure_text(reprec)
    for name, message in EXPECTED.items():
        (text,) = [t for nodeid, t in texts.items() if f"::{name}[" in nodeid]
        assert message in text, f"{name}: {text}"
        assert "INTERNALERROR" not in text


def test_branch_frozen_by_tracing_is_caught(pytester: pytest.Pytester) -> None:
    """dynamo rejects the data-dependent branch; the auto fallback traces one branch; negative inputs expose it."""
    pytester.makepyfile(
        test_branch=BAD_INPUTS.split("def test_model_raises")[0]
        + """
def test_branch(onnx_parity):
    onnx_parity(Branchy(), torch.rand(2, 4))
"""
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "exporter: torchscript" in text
    assert "dynamo exporter failed" in text and "exported with the torchscript fallback because" in text
    assert "values: output 'output'" in text


def _reshape_to_example_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep the input's batch axis symbolic but reshape it to the example's batch of 2 right away."""
    graph = model.graph
    name = graph.input[0].name
    graph.initializer.append(numpy_helper.from_array(np.array([2, 784], np.int64), "planted_shape"))
    for node in graph.node:
        node.input[:] = ["planted_reshaped" if i == name else i for i in node.input]
    graph.node.insert(0, helper.make_node("Reshape", [name, "planted_shape"], ["planted_reshaped"]))
    return model


def test_onnx_model_that_rejects_a_batch_it_declares_dynamic(pytester: pytest.Pytester, plant) -> None:
    path: Path = plant("mlp", _reshape_to_example_batch)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    text = check_planted_file(pytester, "torch_models", "mlp", path)
    assert "onnxruntime-error: ONNX Runtime failed on an input the torch model accepts" in text
    assert "the ONNX graph declares input dims {'x': ['batch', 784]}" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "the user's file must not change"


def test_training_mode_model_is_checked_in_eval_mode_with_a_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from sample_models.torch_models import build

        def test_train_mode(onnx_parity):
            model, example, options = build("encoder")   # has dropout
            model.train()
            assert onnx_parity(model, example, **options).passed
            assert model.training, "the model's mode is restored"
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1)
    assert any("was in training mode" in w and "eval mode" in w for w in parity_warnings(reprec))


def test_inputs_listed_in_another_order_warn_and_fail_under_strict(pytester: pytest.Pytester, plant) -> None:
    from tests.defects import inputs_reordered

    path = plant("two_in_two_out", inputs_reordered)
    pytester.makepyfile(
        f"""
        from sample_models.torch_models import build

        def test_file(onnx_parity):
            model, example, _ = build("two_in_two_out")
            report = onnx_parity(model, example, onnx_model=r"{path}")
            assert any("lists its inputs as ['context', 'features']" in w for w in report.warnings)
        """
    )
    relaxed = pytester.inline_run("-p", "no:cacheprovider")
    relaxed.assertoutcome(passed=1)
    assert any("lists its inputs as ['context', 'features']" in w for w in parity_warnings(relaxed))
    pytester.inline_run("--onnx-strict", "-p", "no:cacheprovider").assertoutcome(failed=1)


def test_inputs_the_model_itself_rejects_are_skipped_with_a_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import torch

        class PositiveOnly(torch.nn.Module):
            def forward(self, x):
                torch._assert((x >= 0).all(), "inputs must be non-negative")
                return torch.sqrt(x) * 2

        def test_validating_model(onnx_parity):
            report = onnx_parity(PositiveOnly().eval(), torch.rand(2, 3), exporter="torchscript")
            assert report.passed and 5 < report.examples < 31
            assert any("raised on" in w and "were skipped" in w for w in report.warnings)
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1)
    assert any("raised on" in w and "were skipped" in w for w in parity_warnings(reprec))


def test_a_graph_that_changed_an_input_dtype_fails_with_the_reason(pytester: pytest.Pytester, plant) -> None:
    from tests.defects import float16_interface

    text = check_planted_file(pytester, "torch_models", "mlp", plant("mlp", float16_interface))
    assert "the ONNX graph takes input 'x' as float16 but the model takes float32" in text, text


FILE_TOO_LARGE = """
import resource, signal, torch

def test_big(onnx_parity):
    # a file size limit below the ONNX file's size: the OS refuses the write with EFBIG (errno 27)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    onnx_parity(torch.nn.Linear(300, 300).eval(), torch.randn(2, 300))
"""


def test_an_export_the_os_cannot_write_is_reported_as_such(pytester: pytest.Pytester, monkeypatch) -> None:
    """Not "make the model exportable" after a TorchScript retry: which file, the OS error and the fix."""
    from tests.conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_big=FILE_TOO_LARGE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert (
        "torch.onnx.export (dynamo) could not write the ONNX file " in text
        and "model.onnx: OSError: [Errno 27]" in text
    )
    assert "file size limit (ulimit -f)" in text and "--basetemp=DIR" in text
    assert "make the model exportable" not in text and "torchscript" not in text.lower()


@pytest.mark.parametrize(
    ("error", "why"),
    [(28, "the disk is full"), (13, "the folder is not writable"), (30, "the file system is read-only")],
)
def test_a_write_error_names_the_file_the_os_error_and_the_fix(tmp_path, error: int, why: str) -> None:
    import os

    from pytest_onnxparity.adapters import write_error

    path = tmp_path / "model.onnx"
    refused = write_error(RuntimeError("export failed"), path, "tf2onnx")
    assert refused is None  # not an OS error: the model's own problem
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(error, os.strerror(error), str(path))
    message = str(write_error(wrapped, path, "tf2onnx"))
    assert f"tf2onnx could not write the ONNX file {path}: " in message and f"[Errno {error}]" in message
    assert why in message and "the model itself was not the problem" in message
    # the same error about another file (one the model's forward opened) is the model's
    elsewhere = OSError(error, os.strerror(error), "/etc/elsewhere/data.bin")
    assert write_error(elsewhere, path, "tf2onnx") is None
