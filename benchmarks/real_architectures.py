"""Real transformers architectures, built from tiny configs (no download), checked with the default options.

    python benchmarks/real_architectures.py [--only bert,gpt2]

Prints one row per model: PASS / FAIL, the input sets compared, the reach, the seconds, and each warning (a
healthy conversion must pass by default: no false alarm from masks with holes, NaN/Inf inputs, long sequences or
a refused noise estimate).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any


def _ids(batch: int, seq: int, vocab: int) -> Any:
    import torch

    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))


def _text(model: Any, seq: int = 9, vocab: int = 120, types: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """An encoder or decoder on ids and a padded attention mask, batch and sequence dynamic."""
    import torch

    mask = torch.ones(2, seq, dtype=torch.int64)
    mask[0, seq - 3 :] = 0
    example = {"input_ids": _ids(2, seq, vocab), "attention_mask": mask}
    if types:
        example["token_type_ids"] = torch.zeros(2, seq, dtype=torch.int64)
    axes = {name: {0: "batch", 1: "seq"} for name in example}
    return model.eval(), example, {"dynamic_axes": axes}


def bert() -> tuple[Any, Any, dict[str, Any]]:
    from sample_models.torch_models import tiny_bert

    return _text(tiny_bert(), types=True)


def distilbert() -> tuple[Any, Any, dict[str, Any]]:
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64)
    return _text(DistilBertModel(config))


def gpt2() -> tuple[Any, Any, dict[str, Any]]:
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=120, n_embd=32, n_layer=2, n_head=4, n_positions=64, use_cache=False)
    return _text(GPT2Model(config))


def llama() -> tuple[Any, Any, dict[str, Any]]:
    from tests.models import tiny_llama

    return _text(tiny_llama(), vocab=128)


def whisper_encoder() -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=64,
        max_source_positions=32,
    )
    features = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1))
    return WhisperEncoder(config).eval(), {"input_features": features}, {}


def vit() -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return ViTModel(config).eval(), {"pixel_values": pixels}, {}


MODELS: dict[str, Callable[[], tuple[Any, Any, dict[str, Any]]]] = {
    "bert": bert,
    "distilbert": distilbert,
    "gpt2": gpt2,
    "llama": llama,
    "whisper-encoder": whisper_encoder,
    "vit": vit,
}


def main() -> None:
    import torch

    from pytest_onnxparity import check
    from pytest_onnxparity.report.parity import reach_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(MODELS), help="comma-separated names: " + ", ".join(MODELS))
    args = parser.parse_args()
    for name in args.only.split(","):
        torch.manual_seed(0)
        model, example, options = MODELS[name]()
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = check(model, example, **options)
        seconds = time.perf_counter() - started
        verdict = "PASS" if report.passed else f"FAIL ({report.failure.kind if report.failure else '?'})"
        print(f"{name:16} {verdict:22} {report.examples:4} sets  {seconds:6.1f} s  reach: {reach_text(report.reach)}")
        if report.failure is not None:
            print(f"    failure: {report.failure.message[:400]}")
        for warning in report.warnings:
            print(f"    warning: {warning[:400]}")


if __name__ == "__main__":
    main()
