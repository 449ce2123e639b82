"""Real architectures at toy sizes, built from their configs (no download): the suite ``benchmarks/xdist.py`` runs.

``build(name) -> (model, example inputs, onnx_parity options)``, seeded; ``NAMES`` lists them. Transformers models
run with the cache off (it does not export) and the attention path torch exports (SDPA); Keras applications are
built with ``weights=None`` at 32x32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Text models: (transformers class, config class, config kwargs beyond the shared small sizes).
TEXT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": ("BertModel", "BertConfig", {}),
    "distilbert": ("DistilBertModel", "DistilBertConfig", {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64}),
    "roberta": ("RobertaModel", "RobertaConfig", {"pad_token_id": 1}),
    "albert": ("AlbertModel", "AlbertConfig", {"embedding_size": 16}),
    "electra": ("ElectraModel", "ElectraConfig", {"embedding_size": 16}),
    "gpt2": ("GPT2Model", "GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}),
    "gpt_neo": (
        "GPTNeoModel",
        "GPTNeoConfig",
        {
            "attention_types": [[["global", "local"], 1]],
            "num_layers": 2,
            "num_heads": 4,
            "window_size": 8,
            "attn_implementation": "eager",
        },
    ),
    "llama": ("LlamaModel", "LlamaConfig", {"num_key_value_heads": 2}),
    "mistral": ("MistralModel", "MistralConfig", {"num_key_value_heads": 2, "sliding_window": None}),
    "qwen2": ("Qwen2Model", "Qwen2Config", {"num_key_value_heads": 2}),
    "opt": ("OPTModel", "OPTConfig", {"ffn_dim": 64, "word_embed_proj_dim": 32}),
    "t5_encoder": ("T5EncoderModel", "T5Config", {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2}),
}
#: ViT-style models on 32x32 RGB images: (transformers class, config class, config kwargs beyond the shared sizes).
VISION: dict[str, tuple[str, str, dict[str, Any]]] = {
    "vit": ("ViTModel", "ViTConfig", {"image_size": 32, "patch_size": 8}),
    "deit": ("DeiTModel", "DeiTConfig", {"image_size": 32, "patch_size": 8}),
    "clip_vision": ("CLIPVisionModel", "CLIPVisionConfig", {"image_size": 32, "patch_size": 8}),
}
#: Convolutional models on 32x32 RGB images, with their own sizes only (no attention, no shared sizes).
CONV: dict[str, tuple[str, str, dict[str, Any]]] = {
    "convnext": ("ConvNextModel", "ConvNextConfig", {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}),
    "resnet": (
        "ResNetModel",
        "ResNetConfig",
        {"embedding_size": 8, "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "layer_type": "basic"},
    ),
}
#: The shared small sizes of a text or ViT-style config (a config ignores what it does not know).
SMALL = {
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "use_cache": False,
    "attn_implementation": "sdpa",
    "bos_token_id": 1,
    "eos_token_id": 2,
}
TEXT_AXES = {name: {0: "batch", 1: "seq"} for name in ("input_ids", "attention_mask")}
KERAS = ("keras_mobilenet_v2", "keras_mobilenet_v3_small", "keras_cnn", "keras_lstm")
NAMES = (*TEXT, *VISION, *CONV, "whisper_encoder", *KERAS)


def _transformers(class_name: str, config_name: str, kwargs: dict[str, Any]) -> Any:
    import torch
    import transformers

    torch.manual_seed(0)
    return getattr(transformers, class_name)(getattr(transformers, config_name)(**kwargs)).eval()


def _text(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """Ids and a right-padded attention mask, batch and sequence dynamic (the check adds left padding and holes)."""
    import torch

    class_name, config_name, extra = TEXT[name]
    ids = torch.randint(3, 128, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[0, 6:] = 0
    example = {"input_ids": ids, "attention_mask": mask}
    return _transformers(class_name, config_name, {**SMALL, **extra}), example, {"dynamic_axes": TEXT_AXES}


def _image(name: str) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    class_name, config_name, extra = VISION.get(name) or CONV[name]
    model = _transformers(class_name, config_name, {**SMALL, **extra} if name in VISION else extra)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, {"pixel_values": pixels}, {"dynamic_axes": {"pixel_values": {0: "batch"}}}


def _whisper_encoder() -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=128,
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=20,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        use_cache=False,
        attn_implementation="sdpa",
    )
    encoder = WhisperModel(config).get_encoder().eval()
    # the encoder takes exactly 2 x max_source_positions frames
    features = torch.randn(2, 16, 40, generator=torch.Generator().manual_seed(1))
    return encoder, {"input_features": features}, {"dynamic_axes": {"input_features": {0: "batch"}}}


def _keras(name: str) -> tuple[Any, Any, dict[str, Any]]:
    import numpy as np
    from keras import applications, layers, models, utils

    utils.clear_session()  # layer names restart: a model's two builds (its two items) are one graph, one export
    utils.set_random_seed(0)
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    if name == "keras_mobilenet_v2":
        return (
            applications.MobileNetV2((32, 32, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"),
            images,
            {},
        )
    if name == "keras_mobilenet_v3_small":
        model = applications.MobileNetV3Small(
            (32, 32, 3), alpha=0.75, include_top=False, weights=None, pooling="avg", include_preprocessing=False
        )
        return model, images, {}
    if name == "keras_cnn":
        model = models.Sequential(
            [
                layers.Input((32, 32, 3)),
                layers.Conv2D(8, 3, activation="relu"),
                layers.BatchNormalization(),
                layers.GlobalAveragePooling2D(),
                layers.Dense(10),
            ]
        )
        return model, images, {}
    model = models.Sequential([layers.Input((None,), dtype="int32"), layers.Embedding(100, 16), layers.LSTM(16)])
    tokens = np.random.default_rng(1).integers(0, 100, (2, 12)).astype(np.int32)
    return model, tokens, {}


BUILDERS: dict[str, Callable[[], tuple[Any, Any, dict[str, Any]]]] = {
    **{name: (lambda name=name: _text(name)) for name in TEXT},
    **{name: (lambda name=name: _image(name)) for name in (*VISION, *CONV)},
    "whisper_encoder": _whisper_encoder,
    **{name: (lambda name=name: _keras(name)) for name in KERAS},
}


def build(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, example inputs, onnx_parity options) of one architecture."""
    return BUILDERS[name]()
