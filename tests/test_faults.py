"""Faults and load: an ONNX Runtime crash or a hang fails one item and the session goes on; every started check is in
the reports (Ctrl-C, a dead xdist worker, a check in a fixture); a long session releases what each check opened."""

from __future__ import annotations

import gc
import json
import tempfile
import textwrap
import time
import weakref
from pathlib import Path

import pytest

from tests.conftest import ROOT

HEALTHY = """
def test_after(onnx_parity):
    onnx_parity(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), exporter="torchscript", examples=0)
"""


def checks(path: Path) -> dict[str, dict]:
    """The JSON report's checks by test name."""
    return {c["nodeid"].split("::")[1]: c for c in json.loads(path.read_text())["checks"]}


def test_an_onnx_runtime_abort_on_any_input_set_fails_that_item_and_the_session_goes_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The all-zeros edge case selects 0 rows for the LSTM (the graph's input is not empty): ONNX Runtime aborts."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        textwrap.dedent(
            """
        import torch
        from tests.models import MaskedLSTM

        def test_masked(onnx_parity):
            onnx_parity(MaskedLSTM().eval(), torch.rand(3, 5, 4) + 0.1, exporter="torchscript", examples=0)
        """
        )
        + HEALTHY
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--onnx-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*onnxruntime-crash: ONNX Runtime crashed with SIGABRT on this input (in the worker process, so only "
            "this check failed)*",
            "*on input: edge: exact zeros*",
        ]
    )
    found = checks(pytester.path / "r.json")
    assert found["test_masked[cpu]"]["failure"]["kind"] == "onnxruntime-crash"
    assert found["test_after[cpu]"]["passed"]


def test_a_run_that_never_returns_fails_its_item_with_the_input_set_and_a_stack(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward pass that loops forever at batch 17, and an ONNX Runtime run that does (a Loop of 10**15 trips): each
    item fails within the watchdog's limit (twice time_budget, at least 5 s), naming the input set and where it was;
    the session goes on."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        textwrap.dedent(
            """
        import torch
        from tests.models import LoopsAt17, onnx_hangs_at_17

        def test_forward(onnx_parity):
            onnx_parity(LoopsAt17().eval(), torch.zeros(2, 4), exporter="torchscript", time_budget=2)

        def test_onnxruntime(onnx_parity, tmp_path):
            path = onnx_hangs_at_17(tmp_path / "loop.onnx")
            onnx_parity(torch.nn.Identity(), torch.zeros(2, 4), onnx_model=path, time_budget=2)
        """
        )
        + HEALTHY
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
    assert time.monotonic() - started < 120, "the watchdog's limit is 5 s per hung run"
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    forward, onnxruntime = text.split("_ test_forward[cpu] _")[1].split("_ test_onnxruntime[cpu] _")
    assert "hung: the run did not return within 5 s" in forward, forward
    assert "while x.shape[0] == 17" in forward and "batch=17" in forward, forward
    assert "hung: ONNX Runtime did not return within 5 s (in the worker process); its stack:" in onnxruntime
    assert "in run" in onnxruntime and "batch=17" in onnxruntime, onnxruntime


def test_after_ctrl_c_the_report_says_interrupted_and_lists_the_check_that_was_running(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
        import torch

        class StopsAt17(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, 2)
            def forward(self, x):
                if x.shape[0] == 17:
                    raise KeyboardInterrupt  # the user's Ctrl-C, in the middle of the second check
                return self.fc(x)
        """
        )
        + HEALTHY.replace("test_after", "test_first")
        + """
def test_second(onnx_parity):
    onnx_parity(StopsAt17().eval(), torch.zeros(2, 4), exporter="torchscript", examples=0)

def test_never_started(onnx_parity):
    onnx_parity(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), exporter="torchscript", examples=0)
"""
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--onnx-report=r.json", no_reraise_ctrlc=True)
    assert reprec.ret == pytest.ExitCode.INTERRUPTED
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["interrupted"] is True
    found = checks(pytester.path / "r.json")
    assert set(found) == {"test_first[cpu]", "test_second[cpu]"}, found
    assert found["test_first[cpu]"]["passed"]
    assert found["test_second[cpu]"]["status"] == "interrupted" and not found["test_second[cpu]"]["passed"]
    pytest.LineMatcher(capsys.readouterr().out.splitlines()).fnmatch_lines(["*test_second?cpu?*INTERRUPTED*"])


def test_a_dead_xdist_worker_leaves_its_item_in_the_report_as_crashed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, signal, pytest, torch

        class KillsAt17(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, 2)
            def forward(self, x):
                if x.shape[0] == 17:
                    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies (out of memory, a native crash)
                return self.fc(x)

        @pytest.mark.parametrize("k", range(3))
        def test_fine(onnx_parity, k):
            onnx_parity(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), exporter="torchscript", examples=0)

        def test_dies(onnx_parity):
            onnx_parity(KillsAt17().eval(), torch.zeros(2, 4), exporter="torchscript", examples=0)
        """
    )
    # a timeout: pytest-xdist 3.8 once waited forever here for a worker started in place of the crashed one
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--onnx-report=r.json", timeout=300)
    result.assert_outcomes(passed=3, failed=1)
    found = checks(pytester.path / "r.json")
    assert len(found) == 4, found
    assert found["test_dies[cpu]"]["status"] == "crashed", found["test_dies[cpu]"]
    assert "worker" in found["test_dies[cpu]"]["error"]
    result.stdout.fnmatch_lines(["*test_dies?cpu?*CRASHED*"])


def test_a_failing_check_in_a_fixture_errors_the_test_and_is_reported(pytester: pytest.Pytester) -> None:
    """The ONNX file shipped is of another version of the model (its bias moved): the fixture's check fails."""
    pytester.makepyfile(
        """
        import copy, pytest, torch

        @pytest.fixture
        def converted(onnx_parity, tmp_path):
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 2).eval()
            shipped = copy.deepcopy(model)
            with torch.no_grad():
                shipped.bias += 1.0
            path = str(tmp_path / "shipped.onnx")
            torch.onnx.export(shipped, (torch.zeros(2, 4),), path, dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
            return onnx_parity(model, torch.zeros(2, 4), onnx_model=path, examples=0)

        def test_uses_the_converted_model(converted):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--onnx-report=r.json")
    result.assert_outcomes(errors=1)
    (entry,) = checks(pytester.path / "r.json").values()
    assert not entry["passed"] and entry["failure"]["kind"] == "values", entry
    result.stdout.fnmatch_lines(
        ["*ONNX parity summary*", "*test_uses_the_converted_model?cpu?*FAIL conversion (values)*"]
    )


def test_a_check_keeps_neither_the_model_nor_a_session_alive(tmp_path: Path) -> None:
    """Without a garbage collection: each check's sessions, graph copies and runners go when it ends (a cycle that
    held them kept about 14 MB per item of a 4 MB model until a full collection)."""
    import onnxruntime
    import torch

    from pytest_onnxparity import check
    from tests.models import export_file

    path = export_file(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), tmp_path / "file.onnx")
    gc.collect()
    gc.disable()
    try:
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
        alive = weakref.ref(model)
        assert check(model, torch.randn(2, 4), workdir=tmp_path / "a", exporter="torchscript", examples=5).passed
        del model
        assert alive() is None, "the check kept the model (and what it opened) alive"
        # an ONNX file as the model: its reference runs in this process
        assert check(path, torch.zeros(2, 4).numpy(), workdir=tmp_path / "b", examples=5).passed
        sessions = [o for o in gc.get_objects() if isinstance(o, onnxruntime.InferenceSession)]
        assert not sessions, f"{len(sessions)} ONNX Runtime session(s) outlived their check"
    finally:
        gc.enable()


def test_the_worker_releases_a_closed_runner_and_its_graph_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from pytest_onnxparity.runners import worker
    from tests.models import export_file

    path = export_file(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), tmp_path / "file.onnx")
    copies = tmp_path / "tmp"
    copies.mkdir()
    worker.stop()
    monkeypatch.setenv("TMPDIR", str(copies))  # the worker started next keeps its graph copies here
    try:
        first = worker.RemoteRunner(path)
        assert len(list(copies.glob("onnxparity_graph_*"))) == 1
        first.close()
        second = worker.RemoteRunner(path)  # the next request releases what was closed
        assert len(list(copies.glob("onnxparity_graph_*"))) == 1
        del second  # collected: released with the next request too
        worker.RemoteRunner(path).close()
        worker.stop()
        assert not list(copies.glob("onnxparity_*")), list(copies.iterdir())
    finally:
        worker.stop()


def test_a_session_leaves_no_temporary_directories(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small items, one failing: no ``onnxparity_*`` directory is left in the temporary directory at the end
    (the failing check's files are in the artifacts directory)."""
    from pytest_onnxparity.runners import worker

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    worker.stop()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    pytester.makepyfile(
        """
        import pytest, torch

        class Off(torch.nn.Module):
            def forward(self, x):
                return x + 1.0

        @pytest.mark.parametrize("k", range(8))
        def test_small(onnx_parity, k):
            torch.manual_seed(k)
            onnx_parity(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), exporter="torchscript", examples=3)

        def test_fails(onnx_parity, tmp_path):
            path = str(tmp_path / "identity.onnx")
            torch.onnx.export(torch.nn.Identity(), (torch.zeros(2, 4),), path, dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
            onnx_parity(Off(), torch.zeros(2, 4), onnx_model=path, examples=0)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--onnx-artifacts={tmp_path / 'artifacts'}")
    result.assert_outcomes(passed=8, failed=1)
    assert not list(scratch.glob("onnxparity_*")), sorted(p.name for p in scratch.iterdir())
    assert list((tmp_path / "artifacts").rglob("*.onnx")), "the failing check keeps its artifacts"
