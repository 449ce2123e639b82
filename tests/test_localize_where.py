"""Say where, right: a failure names the op that broke, not its neighbour: an op between two modules (a functional
call), a Keras layer whose nodes carry no scope, a node missing from a user's file, a model on the nested-tensor fast
path, a defect that shows at some sizes only, and defects in a user's TorchScript-exported transformers file."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import failures_by_test

TORCH = """
import numpy as np, onnx, torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn
from tests.models import SixBlocks, export_file


class Upsampler(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        h = self.stem(x)
        h = F.interpolate(h, scale_factor=0.3, mode="bicubic", antialias=True)
        return self.head(h)


def test_functional_resize(onnx_parity):
    onnx_parity(Upsampler().eval(), torch.randn(1, 3, 16, 16))


def test_removed_node(onnx_parity, tmp_path):
    model = onnx.load(export_file(SixBlocks(4).eval(), torch.randn(2, 16), tmp_path / "healthy.onnx"))
    scopes = lambda n: {p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
    (act,) = [n for n in model.graph.node if n.op_type == "LeakyRelu" and "blocks.2.act" in scopes(n)]
    for node in model.graph.node:  # the activation dropped, its consumer fed its input
        node.input[:] = [act.input[0] if v == act.output[0] else v for v in node.input]
    model.graph.node.remove(act)
    onnx.save(model, str(tmp_path / "artifact.onnx"))
    onnx_parity(SixBlocks(4).eval(), torch.randn(2, 16), onnx_model=str(tmp_path / "artifact.onnx"))


def test_replaced_node(onnx_parity, tmp_path):
    model = onnx.load(export_file(SixBlocks(4).eval(), torch.randn(2, 16), tmp_path / "healthy.onnx"))
    scopes = lambda n: {p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
    (act,) = [n for n in model.graph.node if n.op_type == "LeakyRelu" and "blocks.1.act" in scopes(n)]
    relu = onnx.helper.make_node("Relu", list(act.input), list(act.output), name="relu_for_leaky")  # no scope kept
    model.graph.node.insert(list(model.graph.node).index(act), relu)
    model.graph.node.remove(act)
    onnx.save(model, str(tmp_path / "artifact.onnx"))
    onnx_parity(SixBlocks(4).eval(), torch.randn(2, 16), onnx_model=str(tmp_path / "artifact.onnx"))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(8, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x, padding_mask):
        return self.head(self.encoder(self.embed(x), src_key_padding_mask=padding_mask))


def test_nested_tensor_fast_path(onnx_parity, tmp_path):
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 4:] = True
    example = (torch.randn(2, 6, 8), mask)
    model = onnx.load(onnx_parity(Encoder().eval(), example, examples=0).onnx_path)
    scopes = lambda n: {p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
    (norm,) = [n for n in model.graph.node if "encoder.layers.1.norm1" in scopes(n)]
    norm.attribute[[a.name for a in norm.attribute].index("epsilon")].f = 0.1
    onnx.save(model, str(tmp_path / "artifact.onnx"))
    onnx_parity(Encoder().eval(), example, onnx_model=str(tmp_path / "artifact.onnx"))


def test_scripted(onnx_parity, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    axes = {"x": {0: "batch"}, "y": {0: "batch"}}
    path = str(tmp_path / "m.onnx")
    names = {"input_names": ["x"], "output_names": ["y"]}
    torch.onnx.export(net, (torch.randn(2, 8),), path, dynamo=False, dynamic_axes=axes, **names)
    model = onnx.load(path)
    (weight,) = [t for t in model.graph.initializer if t.name == "0.weight"]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.01), weight.name))
    onnx.save(model, str(tmp_path / "artifact.onnx"))
    onnx_parity(torch.jit.script(net), torch.randn(2, 8), onnx_model=str(tmp_path / "artifact.onnx"))


class Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_sizes(onnx_parity):
    sizes = (1, 8, 10, 16, 32)
    onnx_parity(
        Pooled().eval(),
        torch.randn(1, 3, 8, 8),
        dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}},
        axis_sizes={"height": sizes, "width": sizes},
    )
"""


def test_the_op_that_broke_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_where=TORCH)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore")
    reprec.assertoutcome(failed=6)
    texts = failures_by_test(reprec)
    # a functional call between two modules: the Resize, not the next module's Conv
    resize = texts["test_functional_resize"]
    line = (
        TORCH.strip()
        .splitlines()
        .index('        h = F.interpolate(h, scale_factor=0.3, mode="bicubic", antialias=True)')
    )
    where = (
        f"first divergence: ONNX node 'node__upsample_bicubic2d_aa' (Resize) at test_where.py:{line + 1} in forward()"
    )
    assert where in resize, resize
    assert "F.interpolate(h, scale_factor=0.3, mode=\"bicubic\", antialias=True), the input of Conv2d 'head'" in resize
    assert "then head: max abs diff" in resize
    # a node missing from the user's file: said, on the divergent module
    removed = texts["test_removed_node"]
    assert "first divergence: module 'blocks.2' (tests.models.Block) -> ONNX node" in removed, removed
    assert "(LeakyRelu) of a fresh export is missing from the artifact (its consumer there is " in removed
    # a node replaced by one without a scope: still the module's, found by what it takes and computes
    replaced = texts["test_replaced_node"]
    assert "first divergence: module 'blocks.1.act' (torch.nn.LeakyReLU) -> ONNX node 'relu_for_leaky' (Relu)" in (
        replaced
    ), replaced
    assert "node 'relu_for_leaky' is Relu in the artifact where a fresh export has 'node_leaky_relu_1' (LeakyRelu)" in (
        replaced
    )
    # the nested-tensor fast path: localized, the planted node named
    nested = texts["test_nested_tensor_fast_path"]
    assert "first divergence: module 'encoder.layers.1.norm1' (torch.nn.LayerNorm) -> ONNX node" in nested, nested
    assert "attribute epsilon 0.1 in the artifact vs 1e-05 in a fresh export" in nested
    assert "localization" not in nested.split("first divergence", 1)[1].split("on input:", 1)[0]
    # no module map (a scripted model takes no hooks): said in one line, the first divergent node still named
    scripted = texts["test_scripted"]
    assert "first divergence: ONNX node '/0/Gemm' (Gemm)" in scripted, scripted
    assert "initializer '0.weight' (input 1 of node '/0/Gemm', Gemm) differs from a fresh export" in scripted
    assert (
        "note: the model's modules could not be held against the graph: RuntimeError: register_forward_hook is not "
        "supported on ScriptModules"
    ) in scripted
    # a crash at one size does not hide the silent error at another
    sizes = texts["test_sizes"]
    assert "onnxruntime-error: " in sizes
    assert "sizes on height (batch=2, width=8): matches 8; wrong values 10; ONNX Runtime error 1, 16, 32" in sizes, (
        sizes
    )
    assert "sizes on height=width (batch=2): matches 8; wrong values 10; ONNX Runtime error 1, 16, 32" in sizes


TRANSFORMERS = """
import numpy as np, onnx, pytest, torch
from onnx import numpy_helper
from transformers import DistilBertConfig, DistilBertModel


def model():
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    return DistilBertModel(config).eval()


EXAMPLE = (torch.randint(0, 100, (2, 8)), torch.ones(2, 8, dtype=torch.int64))


@pytest.fixture
def user_file(tmp_path):
    # what an export script or optimum writes: the TorchScript exporter, its own names, opset 17
    axes = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "last_hidden_state": {0: "b", 1: "s"}}
    torch.onnx.export(
        model(), EXAMPLE, str(tmp_path / "model.onnx"), dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"], dynamic_axes=axes,
    )
    return onnx.load(str(tmp_path / "model.onnx"))


def node(graph, name):
    (found,) = [n for n in graph.node if n.name == name]
    return found


def test_weight(onnx_parity, tmp_path, user_file):
    weight_name = node(user_file.graph, "/transformer/layer.1/attention/q_lin/MatMul").input[1]
    (weight,) = [t for t in user_file.graph.initializer if t.name == weight_name]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.01), weight.name))
    onnx.save(user_file, str(tmp_path / "planted.onnx"))
    onnx_parity(model(), EXAMPLE, onnx_model=str(tmp_path / "planted.onnx"))


def test_epsilon(onnx_parity, tmp_path, user_file):
    norm = node(user_file.graph, "/transformer/layer.0/sa_layer_norm/LayerNormalization")
    norm.attribute[[a.name for a in norm.attribute].index("epsilon")].f = 1e-2
    onnx.save(user_file, str(tmp_path / "planted.onnx"))
    onnx_parity(model(), EXAMPLE, onnx_model=str(tmp_path / "planted.onnx"))
"""


def test_defects_in_a_torchscript_transformers_file_are_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_distilbert=TRANSFORMERS)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore")
    reprec.assertoutcome(failed=2)
    texts = failures_by_test(reprec)
    weight = texts["test_weight"]
    assert (
        "first divergence: module 'transformer.layer.1.attention.q_lin' (torch.nn.Linear) -> ONNX node "
        "'/transformer/layer.1/attention/q_lin/MatMul' (MatMul)"
    ) in weight, weight
    assert "(input 1 of node '/transformer/layer.1/attention/q_lin/MatMul', MatMul) differs from a fresh export: " in (
        weight
    )
    epsilon = texts["test_epsilon"]
    assert (
        "first divergence: module 'transformer.layer.0.sa_layer_norm' (torch.nn.LayerNorm) -> ONNX node "
        "'/transformer/layer.0/sa_layer_norm/LayerNormalization' (LayerNormalization)"
    ) in epsilon, epsilon
    assert "attribute epsilon 0.01 in the artifact vs 1e-12 in a fresh export" in epsilon
    for text in (weight, epsilon):  # compared like with like: the one planted difference, nothing else
        assert "artifact vs a fresh export" not in text and "not in a fresh export" not in text, text


def test_a_keras_layer_whose_nodes_have_no_scope_is_named(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tf2onnx")
    pytester.makepyfile(
        """
        import keras, numpy as np, onnx

        def model():
            keras.utils.set_random_seed(0)
            image = keras.Input((16, 16, 3), name="image")
            h = keras.layers.Conv2D(4, 3, padding="same", name="stem")(image)
            h = keras.layers.Resizing(7, 7, name="resizing")(h)
            return keras.Model(image, keras.layers.Conv2D(2, 3, padding="same", name="head")(h))

        def test_resizing(onnx_parity, tmp_path):
            example = np.random.default_rng(0).standard_normal((1, 16, 16, 3)).astype("float32")
            # only its file is needed here (TensorFlow's own rounding differs by a few ulps from run to run)
            exported = onnx.load(onnx_parity(model(), example, examples=0, atol=1e-4).onnx_path)
            (resize,) = [n for n in exported.graph.node if n.op_type == "Resize"]
            assert "resizing" not in resize.name  # tf2onnx names it by op only: Resize__14
            (mode,) = [a for a in resize.attribute if a.name == "coordinate_transformation_mode"]
            mode.s = b"align_corners"
            onnx.save(exported, str(tmp_path / "artifact.onnx"))
            onnx_parity(model(), example, onnx_model=str(tmp_path / "artifact.onnx"))
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore")
    reprec.assertoutcome(failed=1)
    (text,) = failures_by_test(reprec).values()
    assert "first divergence: layer 'resizing' (keras.src.layers." in text, text
    assert ".Resizing) -> ONNX node 'Resize__" in text and "' (Resize): max abs diff" in text
    assert "attribute coordinate_transformation_mode 'align_corners' in the artifact vs 'half_pixel'" in text


def _torchscript_file(tmp_path: Any) -> Any:
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    torch.onnx.export(model, (torch.randn(2, 8),), str(tmp_path / "m.onnx"), dynamo=False, input_names=["x"])
    return onnx.load(str(tmp_path / "m.onnx"))


def test_a_file_from_another_tool_is_compared_by_structure(tmp_path: Any) -> None:
    """Every node and weight renamed (another tool's names), one node dropped, one added: exactly those two are
    said, each once, none of the renamed nodes."""
    from onnx import helper, numpy_helper

    from pytest_onnxparity.graph.scopes import structural_diff
    from tests.defects import relu_clipped_at_6

    fresh = _torchscript_file(tmp_path)
    artifact = type(fresh)()
    artifact.CopyFrom(fresh)
    graph = artifact.graph
    names = {t.name: f"weight_{i}" for i, t in enumerate(graph.initializer)}
    for tensor in graph.initializer:
        tensor.name = names[tensor.name]
    for i, node in enumerate(graph.node):
        node.name = f"op_{i}"
        node.input[:] = [names.get(v, v) for v in node.input]
    (tanh,) = [n for n in graph.node if n.op_type == "Tanh"]
    for node in graph.node:
        node.input[:] = [tanh.input[0] if v == tanh.output[0] else v for v in node.input]
    graph.node.remove(tanh)
    (relu,) = [n for n in graph.node if n.op_type == "Relu"]
    graph.initializer.append(numpy_helper.from_array(np.float32(2.0).reshape(()), "two"))
    doubled = helper.make_node("Mul", [relu.output[0], "two"], ["doubled"], name="extra_scale")
    for node in graph.node:
        node.input[:] = ["doubled" if v == relu.output[0] else v for v in node.input]
    graph.node.insert(list(graph.node).index(relu) + 1, doubled)
    said = [d.text for d in structural_diff(artifact, fresh)]
    assert said == [
        "node '/1/Tanh' (Tanh) of a fresh export is missing from the artifact (its consumer there is 'op_2', Gemm)",
        "node 'extra_scale' (Mul) is in the artifact but not in a fresh export",
    ], said
    assert structural_diff(fresh, fresh) == []
    clipped = [d.text for d in structural_diff(relu_clipped_at_6(fresh), fresh)]
    assert clipped == ["node '/3/Relu_as_relu6' is Clip in the artifact where a fresh export has '/3/Relu' (Relu)"]
