"""Say where: a failure names the first divergent module/layer and ONNX node, the stage that broke it, and
how an artifact differs from a fresh export; a small repro of it is replayable."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, failures_by_test, run_unprivileged
from tests.defects import weight_off

SIX_BLOCKS = """
import numpy as np, onnx, pytest, torch
from onnx import numpy_helper
from torch import nn
from tests.models import SixBlocks, export_file

def artifact(tmp_path, edit):
    model = onnx.load(export_file(SixBlocks().eval(), torch.randn(2, 16), tmp_path / "healthy.onnx"))
    edit(model.graph)
    onnx.save(model, str(tmp_path / "artifact.onnx"))
    return str(tmp_path / "artifact.onnx")

def in_block_3(node):
    return "blocks.3" in {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes", "")

def test_changed_attribute(onnx_parity, tmp_path):
    def alpha(graph):
        (node,) = [n for n in graph.node if n.op_type == "LeakyRelu" and in_block_3(n)]
        node.attribute[0].f = 0.2
    onnx_parity(SixBlocks().eval(), torch.randn(2, 16), onnx_model=artifact(tmp_path, alpha))

def test_changed_initializer(onnx_parity, tmp_path):
    def bias(graph):
        (tensor,) = [t for t in graph.initializer if t.name == "blocks.2.fc.bias"]
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + np.float32(0.5), tensor.name))
    onnx_parity(SixBlocks().eval(), torch.randn(2, 16), onnx_model=artifact(tmp_path, bias))
"""


def test_the_divergent_module_node_attribute_and_initializer_are_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_six=SIX_BLOCKS)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--onnx-artifacts=arts", "--onnx-report=r.json")
    reprec.assertoutcome(failed=2)
    texts = failures_by_test(reprec)
    attribute = texts["test_changed_attribute"]
    assert "first divergence: module 'blocks.3.act' (torch.nn.LeakyReLU) -> ONNX node" in attribute, attribute
    assert "(LeakyRelu)" in attribute and "; conversion (" in attribute
    assert "attribute alpha 0.2 in the artifact vs 0.01 in a fresh export" in attribute
    initializer = texts["test_changed_initializer"]
    assert "first divergence: module 'blocks.2.fc' (torch.nn.Linear)" in initializer, initializer
    assert "initializer 'blocks.2.fc.bias' (input 2 of node" in initializer and "(Gemm)" in initializer
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    divergence = checks["test_changed_attribute[cpu]"]["first_divergence"]
    assert divergence["module"] == "blocks.3.act" and divergence["stage"] == "conversion"
    assert divergence["op_types"] == ["LeakyRelu"] and divergence["line"].startswith("first divergence:")
    # the small repro: the divergent module's subgraph on the inputs ONNX gave it, against torch's output there
    from pytest_onnxparity.replay import main

    local = pytester.path / checks["test_changed_attribute[cpu]"]["artifacts"] / "localized"
    assert json.loads((local / "localization.json").read_text())["module"] == "blocks.3.act"
    assert main([str(local)]) == 1


def test_a_keras_artifact_with_a_changed_middle_kernel_names_the_layer(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tf2onnx")
    pytester.makepyfile(
        """
        import keras, numpy as np, onnx
        from onnx import numpy_helper

        def model():
            keras.utils.set_random_seed(0)
            features = keras.Input((6,), name="features")
            h = keras.layers.Dense(8, activation="relu", name="first")(features)
            h = keras.layers.Dense(8, activation="tanh", name="middle")(h)
            return keras.Model(features, keras.layers.Dense(2, name="last")(h))

        def test_middle_kernel(onnx_parity, tmp_path):
            example = np.random.default_rng(0).standard_normal((2, 6)).astype("float32")
            exported = onnx.load(onnx_parity(model(), example, examples=0).onnx_path)
            (kernel,) = [t for t in exported.graph.initializer if "middle" in t.name and len(t.dims) == 2]
            kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel) * np.float32(1.05), kernel.name))
            onnx.save(exported, str(tmp_path / "artifact.onnx"))
            onnx_parity(model(), example, onnx_model=str(tmp_path / "artifact.onnx"))
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore")
    reprec.assertoutcome(failed=1)
    (text,) = failures_by_test(reprec).values()
    assert "first divergence: layer 'middle' (keras" in text, text
    assert "initializer" in text and "middle" in text.split("initializer", 1)[1][:80]


PROVIDER = """
import numpy as np

def test_artifact(onnx_parity):
    onnx_parity(r"{path}", np.random.default_rng(0).standard_normal((2, 784), np.float32))
"""


def test_a_provider_that_corrupts_one_node_is_named_and_classified(pytester: pytest.Pytester, exported) -> None:
    import onnx

    path = exported("mlp")
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Gemm", "MatMul")]
    middle = nodes[-1].name  # the second layer: inside the graph, neither its first nor its last node
    pytester.makeconftest(
        f"""
        from tests.standin import standin

        def pytest_onnxparity_providers():
            return [standin(corrupt={middle!r})]
        """
    )
    pytester.makepyfile(test_provider=PROVIDER.format(path=path))
    reprec = pytester.inline_run("--onnx-providers=standin", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failures_by_test(reprec).values()
    assert f"first divergence: ONNX node {middle!r}" in text and "; provider (" in text, text
    assert "placement: standin" in text


def test_a_faulty_graph_rewrite_is_classified_as_a_runtime_optimization(pytester: pytest.Pytester, exported) -> None:
    import onnx

    middle = [n.name for n in onnx.load(str(exported("mlp"))).graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    pytester.makeconftest(
        f"""
        from tests.standin import standin

        def pytest_onnxparity_providers():
            return [standin(corrupt={middle!r}, corrupt_when_optimized=True)]
        """
    )
    pytester.makepyfile(
        """
        from sample_models.torch_models import build

        def test_mlp(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, **options)
        """
    )
    reprec = pytester.inline_run("--onnx-providers=standin", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failures_by_test(reprec).values()
    assert "; runtime optimization (agrees with optimizations off, differs from level 'basic' on)" in text, text


def test_localization_is_off_on_request_and_never_runs_on_a_pass(pytester: pytest.Pytester, plant) -> None:
    from tests.defects import weight_off

    path = plant("mlp", weight_off)
    pytester.makepyfile(
        f"""
        from sample_models.torch_models import build

        def test_off(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, onnx_model=r"{path}", localize=False)

        def test_pass(onnx_parity):
            model, example, options = build("mlp")
            assert "localize" not in onnx_parity(model, example, **options).timings
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=1)
    assert "first divergence" not in failures_by_test(reprec)["test_off"]


def test_a_user_file_in_a_read_only_folder_is_localized_and_nothing_is_written_beside_it(
    pytester: pytest.Pytester, plant, monkeypatch
) -> None:
    """The fresh export an artifact is compared with goes to the check's temporary folder, not the user's."""
    import shutil

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    shipped = pytester.path / "shipped"
    shipped.mkdir()
    shutil.copyfile(plant("mlp", weight_off), shipped / "model.onnx")
    pytester.makepyfile(
        test_shipped=f"""
        from sample_models.torch_models import build

        def test_defect(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, onnx_model=r"{shipped / "model.onnx"}", **options)
        """
    )
    shipped.chmod(0o555)
    try:
        result = run_unprivileged(pytester, "--onnx-report=r.json")
    finally:
        shipped.chmod(0o755)
    result.assert_outcomes(failed=1)
    assert [p.name for p in shipped.iterdir()] == ["model.onnx"]
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    divergence = check["first_divergence"]
    assert divergence["stage"] == "conversion", divergence
    assert any("differs from a fresh export" in d for d in divergence["differences"]), divergence
