"""Scaling out: one export per model under pytest-xdist, and one --onnx-cache-dir shared by concurrent sessions."""

from __future__ import annotations

import collections
import json

import pytest

from tests.conftest import ROOT

pytest.importorskip("xdist")

#: Every export, one line per export: the worker (or "main") and the test being run.
EXPORT_LOG = """
import os
from pathlib import Path
import pytest_onnxparity.export.cache as export_module
from tests.standin import standin

_export = export_module.export

def _logged(prepared, *args, **kwargs):
    with open(Path(__file__).parent / "exports.log", "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {os.environ['PYTEST_CURRENT_TEST']}\\n")
    return _export(prepared, *args, **kwargs)

export_module.export = _logged

def pytest_onnxparity_providers():
    return [standin()]
"""

FOUR_MODELS = """
import pytest
import torch

class Net(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        torch.manual_seed(width)
        self.fc = torch.nn.Linear(4, width)
    def forward(self, x):
        return torch.tanh(self.fc(x))

@pytest.mark.parametrize("width", [3, 5, 7, 9])
def test_net(onnx_parity, width):
    assert onnx_parity(Net(width).eval(), torch.randn(2, 4), examples=2, exporter="torchscript").passed
"""


def exports_per_model(log: str) -> dict[int, list[str]]:
    """{model width: [the worker of each of its exports]} from the export log."""
    per_model: dict[int, list[str]] = collections.defaultdict(list)
    for line in log.splitlines():
        worker, test = line.split(" ", 1)
        per_model[int(test.split("[")[1].split("]")[0].split("-")[-1])].append(worker)
    return dict(per_model)


def test_under_xdist_each_model_is_exported_once_and_the_models_spread_over_the_workers(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    """4 models x 2 providers x (export + fp16): 16 items; with ``-n 2`` alone, each model's 4 items run on one
    worker (one export), and both workers get models. Before, xdist's ``load`` split a model's items."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(EXPORT_LOG)
    pytester.makepyfile(test_four=FOUR_MODELS)
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--onnx-providers=cpu,standin",
        "--onnx-variants=fp16",
        "-p",
        "no:cacheprovider",
        "-v",
        "--onnx-report=r.json",
    )
    result.assert_outcomes(passed=16)
    checks = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert len(checks) == 16 and not [c["nodeid"] for c in checks if "@" in c["nodeid"]]  # the ids a user reruns
    per_model = exports_per_model((pytester.path / "exports.log").read_text())
    assert {width: len(workers) for width, workers in per_model.items()} == {3: 1, 5: 1, 7: 1, 9: 1}, per_model
    assert {workers[0] for workers in per_model.values()} == {"gw0", "gw1"}
    assert "--dist" not in result.stdout.str()  # the mode the plugin picked is not a warning
    result.stdout.fnmatch_lines(["*PASSED test_four.py::test_net?cpu-fp16-3?@test_net(width=3)*"])


def test_a_splitting_dist_mode_is_warned_about_with_its_cost(pytester: pytest.Pytester) -> None:
    """A mode the user chose stays (xdist runs it); the warning names the exports it costs and the fix."""
    pytester.makeconftest(EXPORT_LOG)
    pytester.makepyfile(test_four=FOUR_MODELS)
    args = ("--collect-only", "-q", "-p", "no:cacheprovider", "--onnx-providers=cpu,standin", "--onnx-variants=fp16")
    result = pytester.runpytest(*args, "-n", "2", "--dist", "load")
    result.stdout.fnmatch_lines(
        [
            "*--dist load may send a parity test's 4 items (2 provider(s) x 2 export/variants) to different "
            "workers, and each worker that gets one exports the model again: up to 2 exports per model instead "
            "of 1. Leave out --dist*--dist loadgroup, loadscope or loadfile.*"
        ]
    )
    for quiet in (("-n", "2"), ("-n", "2", "--dist", "loadfile"), ("-n", "1", "--dist", "load")):
        assert "exports per model" not in pytester.runpytest(*args, *quiet).stdout.str(), quiet


def test_a_test_with_its_own_xdist_group_keeps_it_and_groups_agree_across_workers(pytester: pytest.Pytester) -> None:
    """The user's group already holds all of a test's items: it is their group. A parameter whose repr differs
    between processes (a memory address) is named by its index: xdist needs the workers to agree."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_onnxparity.plugin.distribute import group_items

        @pytest.hookimpl(trylast=True)
        def pytest_collection_modifyitems(config, items):
            config.option.loadgroup = True  # what a worker of a loadgroup controller has
            group_items(config, items)
            print("IDS", sorted(item.nodeid for item in items))
        """
    )
    pytester.makepyfile(
        test_groups="""
        import pytest

        @pytest.mark.xdist_group("mine")
        @pytest.mark.xdist_group(name="also")
        def test_grouped(onnx_parity):
            pass

        @pytest.mark.parametrize("n", [1, object()], ids=["one", "other"])
        def test_free(onnx_parity, n):
            pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "-s", "-p", "no:cacheprovider", "--onnx-providers=cpu")
    result.stdout.fnmatch_lines(
        [
            "IDS ['test_groups.py::test_free[cpu-one]@test_free(n=1)', "
            "'test_groups.py::test_free[cpu-other]@test_free(n#1)', 'test_groups.py::test_grouped[cpu]@also_mine']"
        ]
    )


def test_a_writer_that_loses_the_race_leaves_the_winners_entry(tmp_path) -> None:
    """Two sessions missed the same entry and exported: the second to write leaves the first's entry as it is (a
    third may be reading it); only a session that found the entry wanting replaces it, moving it aside whole."""
    import torch

    from pytest_onnxparity import check
    from pytest_onnxparity.export.cache import _read_cached, _write_cached
    from pytest_onnxparity.export.exported import ExportedModel
    from pytest_onnxparity.graph import info as graph

    report = check(torch.nn.Linear(3, 2).eval(), torch.zeros(2, 3), examples=0, workdir=tmp_path / "export")
    path = report.onnx_path or ""
    exported = ExportedModel(path, "test", (), (), graph.inspect(path, user_file=False), "exported")
    entry = tmp_path / "cache" / "key"
    assert _write_cached(entry, exported) is None
    winner = (entry / "model.onnx").stat().st_ino
    assert _write_cached(entry, exported) is None  # the loser: no warning, nothing written
    assert (entry / "model.onnx").stat().st_ino == winner
    assert _write_cached(entry, exported, replace=True) is None
    assert (entry / "model.onnx").stat().st_ino != winner
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["key"]  # no staging or moved-aside entry left
    (entry / "meta.json").unlink()  # an entry without its record is unreadable, not absent: it gets replaced
    assert _read_cached(entry)[1] is not None


#: Both sessions export (the cache is empty), then write in turn: the first to arrive at the write writes first.
RACE = """
import os, time
from pathlib import Path
import pytest_onnxparity.export.cache as export_module

_write = export_module._write_cached
HERE = Path(__file__).parent

def _in_turn(entry, exported, *replace):
    (HERE / f"arrived-{time.monotonic_ns()}-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while len(list(HERE.glob("arrived-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = sorted(HERE.glob("arrived-*"))[0].name.endswith(f"-{os.getpid()}")
    while not first and not (HERE / "written").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    problem = _write(entry, exported, *replace)
    (HERE / f"inode-{'first' if first else 'second'}").write_text(str((entry / "model.onnx").stat().st_ino))
    (HERE / "written").touch()
    return problem

export_module._write_cached = _in_turn
"""


def test_two_concurrent_sessions_share_one_cache_dir(pytester: pytest.Pytester, monkeypatch) -> None:
    """Two sessions on one --onnx-cache-dir at once (two CI machines on a network file system, two xdist runs):
    both pass without a cache warning, the entry is the first writer's, whole, and a third session reads it."""
    import subprocess
    import sys

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        test_cached="""
        import torch

        def test_net(onnx_parity):
            torch.manual_seed(0)
            onnx_parity(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval(), torch.randn(2, 4))
        """
    )
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--onnx-cache-dir=cache", "-W", "error"]
    pytester.makeconftest(RACE)
    sessions = [
        subprocess.Popen([*args, f"--onnx-report=r{i}.json"], cwd=pytester.path, stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [session.communicate(timeout=600)[0] for session in sessions]
    assert [s.returncode for s in sessions] == [0, 0], outputs
    for i in range(2):
        (check,) = json.loads((pytester.path / f"r{i}.json").read_text())["checks"]
        assert check["passed"] and check["export_origin"] == "exported" and not check["warnings"]
    (entry,) = (pytester.path / "cache").iterdir()  # one entry, no staging left behind
    first, second = ((pytester.path / f"inode-{n}").read_text() for n in ("first", "second"))
    assert first == second == str((entry / "model.onnx").stat().st_ino)  # the second writer left it alone
    pytester.makeconftest("")
    subprocess.run([*args, "--onnx-report=r.json"], cwd=pytester.path, check=True, capture_output=True)
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["passed"] and check["export_origin"] == "cached"
