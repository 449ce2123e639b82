"""Small models and helpers the inner test sessions import (``from tests.models import ...``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn


def export_file(model: Any, example: Any, path: Path | str, input_name: str = "x", axes: tuple[int, ...] = (0,)) -> str:
    """``model`` exported by the dynamo exporter with dynamic ``axes`` (batch by default): the artifact a user ships."""
    dims = {axis: torch.export.Dim("batch" if axis == 0 else f"axis{axis}") for axis in axes}
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        input_names=[input_name],
        output_names=["output"],
        dynamic_shapes=(dims,),
    )
    return str(path)


class PositionalTagger(nn.Module):
    """Token ids -> per-position tags, with a learned table of 100 positions (the model's own length limit)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(50, 16)
        self.pos_embedding = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.head(torch.tanh(self.tokens(ids) + self.pos_embedding(positions)[None]))


class FrameScorer(nn.Module):
    """Frames (batch, time, 4) -> scores per frame; nothing bounds the time axis."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(frames))


class BatchOfOne(nn.Module):
    """Reshapes to a batch of one: the batch axis is not dynamic in the model, whatever is declared."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(1, 8))


class Tagger(nn.Module):
    """An LSTM over token ids (ONNX Runtime's LSTM aborts the process on an empty batch)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.embed(ids))[0]


class TiedTopK(nn.Module):
    """Scores rounded to a coarse grid, so many tie: TopK indices and the argmax are ambiguous there."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = torch.round(self.fc(x) * 2) / 2
        values, indices = torch.topk(scores, 3, dim=-1)
        return values, indices, scores.argmax(-1)


class ConvGroupNorm(nn.Module):
    """Conv then GroupNorm: on a constant input the normalised values are rounding noise over sqrt(eps)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(1, 8, 5, stride=2)
        self.norm = nn.GroupNorm(8, 8)  # one channel per group, as in Wav2Vec2's feature extractor
        self.head = nn.Conv1d(8, 4, 3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.gelu(self.norm(self.conv(audio[:, None]))))


class DeepBatchNorm(nn.Module):
    """Eight Linear + BatchNorm layers with running statistics far from (0, 1), as after training."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        layers: list[nn.Module] = []
        for _ in range(8):
            norm = nn.BatchNorm1d(32)
            norm.running_mean.copy_(torch.randn(32, generator=gen) * 3)
            norm.running_var.copy_(torch.rand(32, generator=gen) * 5 + 1e-3)
            layers += [nn.Linear(32, 32), norm, nn.Hardswish()]
        self.net = nn.Sequential(nn.Linear(16, 32), *layers, nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConstantHead(nn.Module):
    """Ignores its input (a broken or untrained model): the same output for everything."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.1, 0.2, 0.7]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 3) + 0 * x[:, :3]


class NearlyConstant(nn.Module):
    """Depends on its input, but by far less than any tolerance (EfficientNet untrained: 9e-6 of 0.1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.1 + 1e-12 * self.fc(x)


def tiny_llama() -> nn.Module:
    """A small causal decoder on torch's fused attention (SDPA), cache off so it exports."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return LlamaModel(config).eval()


class SumOfSquaresNorm(nn.Module):
    """A hand-written L2 normalisation over 256 features in the tens: its sum of squares (about 1.5e5) passes
    float16's largest value, 65504, on ordinary inputs; float32 holds it easily."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(64, 256)
        self.head = nn.Linear(256, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x) * 40
        return self.head(h / torch.sqrt((h * h).sum(-1, keepdim=True)))


class Block(nn.Module):
    """A residual block: Linear, LeakyReLU, plus its input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x)) + x


class SixBlocks(nn.Module):
    """Residual blocks and a head: a module tree deep enough to say which block diverges."""

    def __init__(self, blocks: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


class SensorMax(nn.Module):
    """A sensor sequence reduced with ``amax`` over time: torch propagates a NaN sample, ONNX Runtime's ReduceMax
    drops it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.proj(x).amax(dim=1))


class MaskedMean(nn.Module):
    """Mean of the kept frames (``mask`` 1 = keep), a pooled (batch, 8) output: holes in the mask count."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 8)

    def kept(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.to(torch.float32)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = self.kept(mask).unsqueeze(-1)
        return (self.proj(x) * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class SpanMean(MaskedMean):
    """The same weights, but every frame between the first and the last kept one counts: right for left and right
    padding, wrong for a mask with holes (a converter that turns a mask into lengths does this)."""

    def kept(self, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(torch.float32)
        after_first = torch.cumsum(m, 1) > 0
        before_last = torch.flip(torch.cumsum(torch.flip(m, [1]), 1), [1]) > 0
        return (after_first & before_last).to(torch.float32)


class SinusoidalScorer(nn.Module):
    """Per-frame scores with a fixed 1024-row sinusoidal position buffer: the model's own length limit, 1024."""

    def __init__(self, rows: int = 1024, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, width)
        self.head = nn.Linear(width, 1)
        position = torch.arange(rows).unsqueeze(1)
        rate = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        table = torch.zeros(rows, width)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
        self.register_buffer("pe", table)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.proj(frames) + self.pe[: frames.shape[1]])).squeeze(-1)


class DtypeBranch(nn.Module):
    """A float64 path that computes something else (twice the output): its "rounding error" is the output itself."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y * 2 if y.dtype == torch.float64 else y


class MaskedLSTM(nn.Module):
    """An LSTM over the rows a boolean mask selects: the all-zeros edge case selects 0 rows, on which ONNX Runtime's
    LSTM aborts the process (SIGABRT) though the graph's input is not empty."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x[x[:, 0, 0] > 0])[0].sum(0)


class LoopsAt17(nn.Module):
    """A forward pass that never returns on a batch of 17 (the tracer sees a batch of 2: the graph has no loop)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while x.shape[0] == 17:
            pass
        return self.fc(x)


def onnx_hangs_at_17(path: Path | str) -> str:
    """An ONNX file computing ``y = x`` (x: [batch, 4]) through a Loop whose trip count is 10**15 when the batch is
    17: ONNX Runtime's run never returns there."""
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, value: Any, kind: int = TensorProto.INT64) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, kind, [], [value]))

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
        ],
    )
    nodes = [
        const("zero", 0),
        const("seventeen", 17),
        const("forever", 10**15),
        const("once", 1),
        const("true", True, TensorProto.BOOL),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Equal", ["batch", "seventeen"], ["at17"]),
        helper.make_node("Where", ["at17", "forever", "once"], ["trips"]),
        helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body),
    ]
    graph = helper.make_graph(
        nodes,
        "hangs_at_17",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)
