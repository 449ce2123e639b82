"""The engine outside pytest, and one pass rule shared by the check and its replay."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT, failure_text

SCRIPT = """
import gc
import sys
import torch
from pytest_onnxparity import check
from tests.models import export_file

class Counts(torch.nn.Module):
    def forward(self, ids):
        return ids.sum(-1)

ids = torch.randint(2900, 3100, (2, 10))
healthy = check(Counts().eval(), ids, provider="cpu")
print("healthy", healthy.passed, healthy.examples, healthy.outputs[0].name)
print("frozen", gc.get_freeze_count())  # the search sets the heap aside from the collector, then gives it back
gc.freeze()  # a user's own freeze (before forking workers, say) is theirs to undo
right = export_file(Counts(), ids, sys.argv[1] + "/right.onnx", "ids")
again = check(Counts().eval(), ids, onnx_model=right, examples=3)
print("kept", again.passed, gc.get_freeze_count() > 0)
gc.unfreeze()
artifact = export_file(torch.nn.Identity(), ids, sys.argv[1] + "/wrong.onnx", "ids")
wrong = check(Counts().eval(), ids, onnx_model=artifact)
print("wrong", wrong.passed, wrong.failure.kind)
print("pytest imported:", any(name == "pytest" or name.startswith("_pytest") for name in sys.modules))
"""


def test_the_python_api_checks_a_model_without_pytest(tmp_path) -> None:
    script = tmp_path / "export_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    healthy = lines["healthy"].split()
    assert healthy[0] == "True" and int(healthy[1]) > 20 and healthy[2] == "output"
    assert lines["wrong"].split()[0] == "False" and lines["pytest"] == "imported: False"
    assert lines["frozen"] == "0" and lines["kept"] == "True True"


OFF_BY_ONE = """
import torch
from tests.models import export_file

class Total(torch.nn.Module):
    def forward(self, ids):
        return ids.sum(-1)

class TotalPlusOne(torch.nn.Module):
    def forward(self, ids):
        return ids.sum(-1) + 1

def test_total(onnx_parity, tmp_path):
    ids = torch.randint(2900, 3100, (2, 10))      # sums near 30000: off by one is 3e-5 relative
    onnx_parity(Total(), ids, onnx_model=export_file(TotalPlusOne(), ids, tmp_path / "plus_one.onnx", "ids"))
"""


def test_an_int64_off_by_one_fails_the_check_and_its_replay(pytester: pytest.Pytester) -> None:
    from pytest_onnxparity.replay import main

    pytester.makepyfile(test_total=OFF_BY_ONE)
    reprec = pytester.inline_run("--onnx-artifacts=arts", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "values: output 'output'" in text and "(atol 0, rtol 0)" in text
    (case,) = (pytester.path / "arts").iterdir()
    assert main([str(case)]) == 1
    # The replay holds the check's own tolerances: widening them in the record is what makes it pass.
    record = case / "parity.json"
    record.write_text(record.read_text().replace("0.0,\n        0.0", "2.0,\n        0.0"))
    assert main([str(case)]) == 0


def _replay_case(tmp_path, exported, input_shape=(2, 784), output_dtype="float32"):
    """An artifact directory by hand: the sample MLP (weights inside) and one input/output pair."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    case = tmp_path / "case"
    data = case / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx.load(str(exported("mlp"))), str(case / "model.onnx"))
    (data / "input_0.pb").write_bytes(
        numpy_helper.from_array(np.zeros(input_shape, np.float32), "x").SerializeToString()
    )
    output = np.zeros((2, 10), output_dtype)
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(output, "o").SerializeToString())
    return case


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("file", "is not a directory"),
        ("no-model", "has no model.onnx"),
        ("no-data", "there is nothing to replay"),
        ("no-output", "output_0.pb is missing"),
    ],
)
def test_replay_refuses_what_it_cannot_check(tmp_path, exported, damage: str, message: str, capsys) -> None:
    import shutil

    from pytest_onnxparity.replay import main

    case = target = _replay_case(tmp_path, exported)
    if damage == "file":
        target = case / "model.onnx"
    elif damage == "no-model":
        (case / "model.onnx").unlink()
    elif damage == "no-data":
        shutil.rmtree(case / "test_data_set_0")
    else:
        (case / "test_data_set_0" / "output_0.pb").unlink()
    assert main([str(target)]) == 2
    assert message in capsys.readouterr().err


def test_replay_fails_on_a_wrong_input_shape_and_a_wrong_dtype(tmp_path, exported, capsys) -> None:
    from pytest_onnxparity.replay import main

    assert main([str(_replay_case(tmp_path, exported, input_shape=(784, 2)))]) == 1
    assert "ONNX Runtime failed" in capsys.readouterr().out
    assert main([str(_replay_case(tmp_path, exported, output_dtype="float64"))]) == 1
    assert "dtype" in capsys.readouterr().out


def _package_imports() -> dict[str, set[str]]:
    """Each module of the package (dotted, relative to it) and the package modules it imports: at the top, under
    TYPE_CHECKING or inside a function alike (an import that runs late is still a dependency)."""
    import ast

    package = ROOT / "pytest_onnxparity"
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if name else []
        base = here if is_package else here[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                origin = base[: len(base) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                targets = _imported(origin, node.names, modules)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_onnxparity"):
                origin = node.module.split(".")[1:]  # type: ignore[union-attr]
                targets = _imported(origin, node.names, modules)
            found |= {target for target in targets if target in modules and target != name}
        graph[name] = found
    return graph


def _imported(origin: list[str], names: list[Any], modules: Any) -> list[str]:
    """``from origin import names``: the modules among the names, else ``origin`` itself."""
    submodules = [".".join([*origin, alias.name]) for alias in names if ".".join([*origin, alias.name]) in modules]
    return submodules or [".".join(origin)]


def test_the_package_has_no_import_cycles_between_modules_or_subpackages() -> None:
    graph = _package_imports()

    def cycle(edges: dict[str, set[str]]) -> list[str] | None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = 1
            stack.append(node)
            for nxt in sorted(edges.get(node, ())):
                if state.get(nxt) == 1:
                    return [*stack[stack.index(nxt) :], nxt]
                if nxt not in state and (found := visit(nxt)):
                    return found
            stack.pop()
            state[node] = 2
            return None

        return next((found for node in sorted(edges) if node not in state and (found := visit(node))), None)

    # a package's __init__ is the package's public face: importing it is not a dependency of the package on itself
    assert cycle({k: {v for v in vs if not k.startswith(v + ".")} for k, vs in graph.items()}) is None

    def room(module: str) -> str:
        return module.split(".")[0] if "." in module or module in {"plugin", "adapters", "runners"} else module

    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module == "":  # the public API imports what it exposes
            continue
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) not in {room(module), ""})
    assert cycle(rooms) is None, rooms


def test_every_relative_import_names_a_module_of_the_package() -> None:
    """A late import (inside a function) is only run when its code path is: a module that moved would otherwise
    show up as an error in one user's check."""
    import ast

    package = ROOT / "pytest_onnxparity"
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = is_package
    missing = []
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package).with_suffix("").parts)
        base = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                origin = ".".join(
                    base[: len(base) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                )
                if origin not in modules:
                    missing.append(f"{path.relative_to(package)}:{node.lineno} imports {origin or '.'}")
    assert not missing, missing


def test_pytest_stays_in_the_plugin_and_frameworks_in_the_adapters() -> None:
    package = ROOT / "pytest_onnxparity"
    for path in package.rglob("*.py"):
        where = path.relative_to(package).as_posix()
        text = path.read_text()
        if not where.startswith("plugin/"):
            assert "import pytest" not in text and "_pytest" not in text, where
        if not where.startswith(("adapters/", "plugin/benchmark.py")):  # the benchmark matches the framework's threads
            assert not any(f"import {m}" in text for m in ("torch", "tensorflow", "keras", "tf2onnx")), where


def test_replay_fails_a_model_that_lost_an_output(tmp_path, exported, capsys) -> None:
    """A model.onnx that no longer returns the 2nd output the check compared is no parity, however well the 1st
    agrees."""
    import json

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from pytest_onnxparity.replay import main

    case = _replay_case(tmp_path, exported)
    model = onnx.load(str(case / "model.onnx"))
    hidden = model.graph.node[1].output[0]  # the first layer's activations, as a second output
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(hidden))
    onnx.save(model, str(case / "model.onnx"))
    data = case / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb")))
    session = ort.InferenceSession(str(case / "model.onnx"), providers=["CPUExecutionProvider"])
    for k, value in enumerate(session.run(None, {session.get_inputs()[0].name: x})):
        (data / f"output_{k}.pb").write_bytes(numpy_helper.from_array(value, f"o{k}").SerializeToString())
    record = [{"name": name, "tolerance": [1e-6, 1e-5]} for name in ("logits", "hidden")]
    (case / "parity.json").write_text(json.dumps({"outputs": record, "noise_factor": 10.0}))
    assert main([str(case)]) == 0
    del model.graph.output[1]
    onnx.save(model, str(case / "model.onnx"))
    assert main([str(case)]) == 1
    out = capsys.readouterr().out
    assert "count: the model returns 2 output(s) ['logits', 'hidden'] but the ONNX graph has 1" in out, out
    assert "parity FAILED" in out
    # without a record, the output_K.pb files say how many outputs there were
    (case / "parity.json").unlink()
    assert main([str(case)]) == 1


def test_replay_refuses_a_provider_this_onnxruntime_lacks(tmp_path, exported, capsys) -> None:
    """ONNX Runtime would warn and run on the CPU: a replay "on CUDA" would be a CPU verdict under CUDA's name."""
    import onnxruntime as ort

    from pytest_onnxparity.replay import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    case = _replay_case(tmp_path, exported)
    for name in ("CUDAExecutionProvider", "cuda"):
        assert main(["--provider", name, str(case)]) == 2
        err = capsys.readouterr().err
        assert "CUDAExecutionProvider is not available in this build of ONNX Runtime" in err, err
        assert "'CPUExecutionProvider'" in err and "--provider" in err
