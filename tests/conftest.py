"""Fixtures for the plugin's own tests: models exported once per session, defects planted on copies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _pytest import pytester as _pytester

# pytester restores sys.modules after every inner session. Compiled extensions that registered global
# state (torch's operator libraries, onnxruntime, TensorFlow) cannot be imported twice in one process, so
# a module first imported inside an inner session must outlive it: keep everything but the inner sessions'
# own test modules and conftests. (Private pytest API; running every inner session in a subprocess instead
# would re-import torch and re-warm the exporter each time, minutes in all.)
_original_snapshot_init = _pytester.SysModulesSnapshot.__init__


def _snapshot_init(self: _pytester.SysModulesSnapshot, preserve: Callable[[str], bool] | None = None) -> None:
    def keep(name: str) -> bool:
        inner = name.split(".")[0].startswith(("test_", "conftest"))
        return not inner or (preserve is not None and preserve(name))

    _original_snapshot_init(self, preserve=keep)


_pytester.SysModulesSnapshot.__init__ = _snapshot_init  # type: ignore[method-assign]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``exported(name)``: a sample model's ONNX file (``keras/cnn`` for Keras), exported once per session."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            import importlib

            from pytest_onnxparity import adapters
            from pytest_onnxparity.inputs import resolve_dynamic_axes
            from pytest_onnxparity.settings import resolve

            framework, _, model_name = name.rpartition("/")
            module = importlib.import_module(f"sample_models.{framework or 'torch'}_models")
            model, example, options = module.build(model_name)
            settings = resolve(options, {}, {})
            prepared = adapters.prepare(model, example, settings)
            axes = resolve_dynamic_axes(prepared.example, settings, prepared.model_dynamic_axes)
            path = tmp_path_factory.mktemp(f"export_{model_name}") / "model.onnx"
            prepared.export(path, axes, settings)
            cache[name] = path
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
