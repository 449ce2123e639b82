"""Fixtures for the plugin's own tests: models exported once per session, defects planted on copies."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _frameworks_loaded() -> None:
    """Load the exporters' lazily imported machinery once, in this process.

    pytester's inline runs drop the modules an inner session imported; compiled extensions (torch's
    operator libraries, TensorFlow) cannot be imported twice in one process, so the outer session runs
    one tiny export of each framework first and the inner sessions find everything loaded.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("transformers")
        for exporter in ("dynamo", "torchscript"):
            from pytest_onnxparity import check

            check(torch.nn.Linear(2, 2).eval(), torch.zeros(2, 2), exporter=exporter, examples=0)
        try:
            import numpy as np

            from sample_models.keras_models import build

            model, example, _ = build("two_in_two_out")
            check(model, example, examples=0)
            check(build("tf_function")[0], np.zeros((2, 5), np.float32), examples=0)
        except ImportError:  # the tensorflow extra is not installed: its tests skip
            pass


@pytest.fixture(autouse=True)
def _inner_sessions_are_not_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest tests -n 2`` a worker's environment would tell pytest-benchmark in pytester's inner sessions
    that they are xdist workers too, and it would turn itself off there."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``exported(name)``: a sample model's ONNX file (``keras/cnn`` for Keras), exported once per session."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            from pytest_onnxparity import check

            framework, _, model_name = name.rpartition("/")
            module = importlib.import_module(f"sample_models.{framework or 'torch'}_models")
            model, example, options = module.build(model_name)
            workdir = tmp_path_factory.mktemp(f"export_{model_name}")
            report = check(model, example, workdir=workdir, examples=0, **options)
            cache[name] = Path(report.onnx_path or "")
        return cache[name]

    return get


@pytest.fixture
def plant(exported: Callable[[str], Path], tmp_path: Path) -> Callable[..., Path]:
    """``plant(model_name, edit)``: a copy of the exported model with ``edit`` applied to its graph."""
    import onnx

    def make(name: str, edit: Callable[[onnx.ModelProto], onnx.ModelProto]) -> Path:
        model = onnx.load(str(exported(name)))
        edited = edit(model)
        onnx.checker.check_model(edited)
        path = tmp_path / f"{name.rpartition('/')[2]}_defective.onnx"
        onnx.save(edited, str(path))
        return path

    return make


def failure_text(reprec: pytest.HookRecorder) -> dict[str, str]:
    """nodeid -> failure text of every failed test of an inline run."""
    return {r.nodeid: r.longreprtext for r in reprec.getreports("pytest_runtest_logreport") if r.failed}


def failures_by_test(reprec: pytest.HookRecorder) -> dict[str, str]:
    """Test function name (no module, no parameters) -> failure text, for inner runs of many small tests."""
    return {nodeid.split("::")[1].split("[")[0]: text for nodeid, text in failure_text(reprec).items()}


def parity_warnings(reprec: pytest.HookRecorder) -> list[str]:
    """The plugin's own warnings of an inline run (pytest's other warnings vary with how it was started)."""
    from pytest_onnxparity import OnnxParityWarning

    return [
        str(call.warning_message.message)
        for call in reprec.getcalls("pytest_warning_recorded")
        if issubclass(call.warning_message.category, OnnxParityWarning)
    ]


def check_planted_file(pytester: pytest.Pytester, models_module: str, model_name: str, path: Path, *args: str) -> str:
    """Run an inner test checking ``path`` against the sample model (``args`` for pytest); it must fail.

    Returns the failure text.
    """
    pytester.makepyfile(
        f"""
        from sample_models.{models_module} import build

        def test_defect(onnx_parity):
            model, example, options = build({model_name!r})
            onnx_parity(model, example, onnx_model=r"{path}", **options)
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider", *args)
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    return text


def run_unprivileged(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in a child process that file permissions bind, also when this runs as root (root ignores them; the
    child's capability to is dropped with setpriv): a folder made read-only (chmod 555) is read-only to it."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={pytester.path / 'tmp'}", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("runs as root without setpriv: a read-only folder cannot be made read-only to pytest")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    return pytester.run(*command, timeout=600)
