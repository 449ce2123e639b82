"""The arithmetic each execution provider runs a float32 graph in, why, and how to make it exact.

Reduced precision (OpenVINO's bf16 on CPUs with AMX, TF32 on NVIDIA GPUs, fp16) is stated in the
report; the provider's verdict allows what that precision was measured to cause on each input (``emulation.py``,
``tolerance.for_provider``), while the conversion's verdict stays at float32 (a real defect still fails).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from . import registry


@dataclasses.dataclass(frozen=True)
class Precision:
    """The arithmetic a provider runs a float32 graph in, why, and how to make it exact."""

    name: str  # f32 | tf32 | f16 | bf16
    reason: str
    force_f32: str = ""

    @property
    def reduced(self) -> bool:
        return self.name != "f32"

    def text(self) -> str:
        hint = f"; for an exact check: {self.force_f32}" if self.reduced and self.force_f32 else ""
        return f"{self.name} ({self.reason}{hint})"


def precision(short: str, options: Mapping[str, str]) -> Precision:
    """At which precision ``short`` runs a float32 graph with these options (see each provider's docs)."""
    defined = registry.definition(short)
    if defined.precision is not None:
        return defined.precision(options)
    if short == "openvino":
        return _openvino_precision(options)
    if short == "cuda":
        if options.get("use_tf32", "1") != "0":
            return Precision(
                "tf32",
                "the CUDA provider's default use_tf32=1: MatMul/Conv use TF32 tensor cores on Ampere and newer GPUs",
                "--onnx-provider-options=cuda:use_tf32=0",
            )
    if short == "tensorrt":
        if options.get("trt_fp16_enable", "0") not in ("0", "false", "False"):
            return Precision("f16", "trt_fp16_enable=1", "drop trt_fp16_enable")
        return Precision("tf32", "TensorRT allows TF32 kernels by default on Ampere and newer GPUs")
    if short in ("coreml", "dml"):
        return Precision("f16", f"{short} may run float32 graphs in half precision on the GPU/ANE")
    return Precision("f32", "float32 kernels")


_OV_HINT = '--onnx-provider-options=openvino:load_config={"CPU":{"INFERENCE_PRECISION_HINT":"f32"}}'


def _openvino_precision(options: Mapping[str, str]) -> Precision:
    """OpenVINO's CPU plugin runs bf16 by default where the CPU has native bf16 (AVX512_BF16 / AMX).

    The plugin EP (onnxruntime-ep-openvino) keeps OpenVINO's default; the classic EP (onnxruntime-openvino)
    asks for f32 on CPU unless ``precision`` says otherwise. ``load_config``'s INFERENCE_PRECISION_HINT
    overrides both.
    """
    device = options.get("device_type", "CPU").upper()
    try:
        config = json.loads(options.get("load_config", "{}") or "{}")
        hint = str(config.get(device.split(":")[0], {}).get("INFERENCE_PRECISION_HINT", "")).lower()
    except (ValueError, AttributeError):
        hint = ""
    if hint:
        return Precision(hint, "load_config's INFERENCE_PRECISION_HINT", _OV_HINT)
    devices = registry.plugin_devices("openvino")
    if not devices and "precision" in options:
        name = {"FP32": "f32", "ACCURACY": "f32", "FP16": "f16"}.get(options["precision"].upper(), "f32")
        return Precision(name, f"precision={options['precision']}", "--onnx-provider-options=openvino:precision=FP32")
    if not device.startswith("CPU"):
        return Precision("f16", f"OpenVINO's {device} default", "--onnx-provider-options=openvino:precision=FP32")
    if not devices:
        return Precision("f32", "the classic OpenVINO provider (onnxruntime-openvino) asks for f32 on CPU")
    if "BF16" in str(devices[0].ep_metadata.get("OPTIMIZATION_CAPABILITIES", "")):
        return Precision(
            "bf16", "OpenVINO's CPU default on this CPU, which has native bf16 (AVX512_BF16/AMX)", _OV_HINT
        )
    return Precision("f32", "OpenVINO's CPU default on this CPU (no native bf16)")
