"""Every name a user can write in an option, with its default, in one place: validation, the engine and the
reports read them from here."""

from __future__ import annotations

#: The variants the plugin builds from an export (``export/variants.py``), in the order they are listed.
VARIANTS = ("optimized", "simplified", "fp16", "int8-dynamic", "int8-static")
#: Variants judged by metrics rather than element by element (``variant_metrics``).
QUANTIZED_VARIANTS = ("int8-dynamic", "int8-static")
#: The metrics a variant can be held to (``judge/metrics.py``); cosine and top-k agreement lie in [0, 1].
METRICS = ("cosine", "snr_db", "top1", "top5")
#: Default thresholds of a quantized variant's metrics (``variant_metrics`` overrides them, per variant or per
#: output). Lossless variants (optimized, simplified) and fp16 have none: the element-wise rule judges them.
QUANTIZED_METRICS = {"cosine": 0.99, "snr_db": 20.0, "top1": 0.9, "top5": 0.99}
#: How many times the reference's own measured rounding error a difference may reach (``noise_factor``).
NOISE_FACTOR = 10.0
