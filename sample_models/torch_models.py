"""Small PyTorch models of the kinds users convert, each with example inputs and the options it needs.

``build(name)`` makes the same weights every time (seeded), so a model exported once can be checked
again later against a file on disk.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


class LSTMTagger(nn.Module):
    """Token ids -> per-token tag logits."""

    def __init__(self, vocab: int = 100, tags: int = 7) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.out = nn.Linear(32, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(tokens))
        return self.out(hidden)


class TwoInTwoOut(nn.Module):
    """Two inputs, two named outputs of the same shape (so swapped outputs are a silent bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.b = nn.Linear(6, 4)

    def forward(self, features: torch.Tensor, context: torch.Tensor) -> dict[str, torch.Tensor]:
        fa, fb = self.a(features), self.b(context)
        return {"score": torch.tanh(fa + fb), "gate": torch.sigmoid(fa - fb)}


class EncoderClassifier(nn.Module):
    """A small transformer encoder with a padding mask (True = padding) and masked mean pooling."""

    def __init__(self, d_model: int = 32) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 3)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(x, src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * keep).sum(1) / keep.sum(1))


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    return BertModel(config, add_pooling_layer=True)


def build(name: str) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode, example inputs, onnx_parity options) for a sample model, seeded."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if name == "mlp":
        return MLP().eval(), torch.randn(2, 784, generator=gen), {}
    if name == "cnn":
        return SmallCNN().eval(), torch.randn(2, 3, 32, 32, generator=gen), {}
    if name == "lstm":
        tokens = torch.randint(0, 100, (2, 12), generator=gen)
        return LSTMTagger().eval(), tokens, {"dynamic_axes": {"tokens": {0: "batch", 1: "seq"}}}
    if name == "two_in_two_out":
        return TwoInTwoOut().eval(), (torch.randn(2, 8, generator=gen), torch.randn(2, 6, generator=gen)), {}
    if name == "encoder":
        x = torch.randn(2, 10, 32, generator=gen)
        mask = torch.zeros(2, 10, dtype=torch.bool)
        mask[1, 7:] = True
        axes = {"x": {0: "batch", 1: "seq"}, "padding_mask": {0: "batch", 1: "seq"}}
        return EncoderClassifier().eval(), (x, mask), {"dynamic_axes": axes}
    if name == "bert":
        ids = torch.randint(0, 120, (2, 9), generator=gen)
        mask = torch.ones(2, 9, dtype=torch.int64)
        mask[0, 6:] = 0
        axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
        example = {"input_ids": ids, "attention_mask": mask}
        return tiny_bert().eval(), example, {"dynamic_axes": axes}
    raise KeyError(name)


NAMES = ("mlp", "cnn", "lstm", "two_in_two_out", "encoder", "bert")
