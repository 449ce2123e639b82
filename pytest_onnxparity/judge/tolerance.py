"""The tolerance of each output: dtype defaults, the provider's precision, the user's atol/rtol.

Standard library only; ``compare.py`` applies what this module decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..options.names import NOISE_FACTOR

if TYPE_CHECKING:
    from ..options.settings import CheckOptions

#: (atol, rtol) by float dtype; integers and bools are exact.
DTYPE_DEFAULTS = {
    "float16": (1e-3, 1e-2),
    "bfloat16": (1e-2, 2e-2),
    "float32": (1e-6, 1e-5),
    "float64": (1e-7, 1e-6),
}
#: An fp16 variant's float32 outputs are held to at least these (atol, rtol): the variant computes in float16.
F16_VARIANT = (1e-2, 1e-2)
#: The floor of a reduced-precision provider's allowance against ONNX Runtime's CPU provider: two units roundoff of
#: its precision (one rounding of an operand, one of the result), as atol (of the output's scale) and rtol. Above it
#: the allowance is PROVIDER_NOISE_FACTOR times the deviation its precision was measured to cause on the same input
#: (``emulation.py``), measured where more than half the floor is used.
PRECISION_FLOORS = {"tf32": (2.0**-10, 2.0**-10), "f16": (2.0**-10, 2.0**-10), "bf16": (2.0**-7, 2.0**-7)}
#: How many times that measured deviation a provider may be off: its kernels round in other places and orders than
#: the emulation (which rounds every value), and accumulate in float32 where it rounds.
PROVIDER_NOISE_FACTOR = 4.0


def is_float(dtype_name: str) -> bool:
    return dtype_name.startswith(("float", "bfloat"))


@dataclasses.dataclass(frozen=True)
class TolerancePolicy:
    """What each output is allowed: a number or a per-output dict for atol/rtol, else the defaults.

    ``reason`` says why the defaults were widened (a provider running in reduced precision).
    """

    atol: float | Mapping[str, float] | None = None
    rtol: float | Mapping[str, float] | None = None
    precision_default: tuple[float, float] | None = None
    reason: str = ""
    #: How many times the reference's own rounding error is tolerated (0: the fixed tolerance alone).
    noise_factor: float = NOISE_FACTOR
    #: The variant checked (``variants.py``), and the user's ``variant_metrics``: a variant's report shows the
    #: metrics of ``metrics.py``; one with thresholds (int8) is judged by them instead of element by element.
    variant: str | None = None
    variant_metrics: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def judged_by_metrics(self) -> bool:
        """The variant's float outputs are judged by metric thresholds (int8), not element by element."""
        from . import metrics

        return bool(metrics.thresholds(self.variant, "", self.variant_metrics))

    def limits(self, name: str, dtype_name: str, ndim: int = 2) -> dict[str, float]:
        """The metric thresholds output ``name`` is judged by ({}: the element-wise rule judges it)."""
        from . import metrics

        return metrics.thresholds(self.variant, name, self.variant_metrics, ndim) if is_float(dtype_name) else {}

    def for_output(self, name: str, dtype_name: str) -> tuple[float, float]:
        """(atol, rtol) of one output; a user number applies to float outputs, a per-output dict to any."""
        named = any(isinstance(v, Mapping) and name in v for v in (self.atol, self.rtol))
        if not is_float(dtype_name) and not named:
            return 0.0, 0.0
        default = DTYPE_DEFAULTS.get(dtype_name, DTYPE_DEFAULTS["float32"]) if is_float(dtype_name) else (0.0, 0.0)
        if self.precision_default is not None and dtype_name == "float32":
            default = self.precision_default

        def pick(value: Any, fallback: float) -> float:
            if isinstance(value, Mapping):
                return float(value.get(name, fallback))
            return fallback if value is None else float(value)

        return pick(self.atol, default[0]), pick(self.rtol, default[1])


def for_conversion(options: CheckOptions, output_names: Sequence[str], variant: str | None = None) -> TolerancePolicy:
    """The conversion's verdict: ONNX Runtime's CPU provider against the framework, on every item whatever its
    provider. ``provider_tolerances['cpu']`` > atol/rtol > dtype defaults; an fp16 variant's, an int8 variant's
    metric thresholds.

    A per-output dict must name outputs the model returns (a misspelled name would silently apply nothing).
    """
    _validate(options, output_names)
    override = options.provider_tolerances.get("cpu", {})
    policy = TolerancePolicy(
        override.get("atol", options.atol), override.get("rtol", options.rtol), noise_factor=options.noise_factor
    )
    return _with_variant(policy, options, variant)


def for_provider(
    options: CheckOptions, provider: str, output_names: Sequence[str], variant: str | None = None
) -> TolerancePolicy:
    """The provider's verdict: its outputs against ONNX Runtime's CPU provider on the same graph and inputs.

    ``provider_tolerances[provider]`` > the floor of the precision it computes in (``precision.py``) > dtype
    defaults; above the floor, the deviation its precision was measured to cause (``emulation.py``) times
    PROVIDER_NOISE_FACTOR, or for a float32 provider the reference's own rounding error times ``noise_factor``.
    The user's atol/rtol describe the conversion and do not apply here.
    """
    from ..providers import precision

    _validate(options, output_names)
    override = options.provider_tolerances.get(provider, {})
    atol, rtol = override.get("atol"), override.get("rtol")
    ran = precision.precision(provider, options.provider_options.get(provider, {}))
    if not ran.reduced or ran.name not in PRECISION_FLOORS:
        policy = TolerancePolicy(atol, rtol, noise_factor=options.noise_factor)
        return _with_variant(policy, options, variant)
    floor = PRECISION_FLOORS[ran.name]
    given = f"atol {floor[0]:.3g}, rtol {floor[1]:.3g}"
    given = f"provider_tolerances={{'{provider}': {dict(override)}}}" if override else given
    reason = (
        f"the provider's verdict: {provider} runs in {ran.name}, so it is held against ONNX Runtime's CPU provider "
        f"within {PROVIDER_NOISE_FACTOR:g} x the deviation {ran.name} was measured to cause on each input, at least "
        f"{given}; the conversion's verdict keeps float32 tolerances"
    )
    policy = TolerancePolicy(atol, rtol, floor, reason, PROVIDER_NOISE_FACTOR)
    return _with_variant(policy, options, variant)


def _with_variant(policy: TolerancePolicy, options: CheckOptions, variant: str | None) -> TolerancePolicy:
    """A variant's policy: its metrics (int8 thresholds judge it); an fp16 variant's float32 outputs at least f16's."""
    if variant is None:
        return policy
    policy = dataclasses.replace(policy, variant=variant, variant_metrics=options.variant_metrics)
    if variant != "fp16":
        return policy
    atol, rtol = policy.precision_default or F16_VARIANT
    widest = (max(atol, F16_VARIANT[0]), max(rtol, F16_VARIANT[1]))

    def at_least(value: Any, floor: float) -> Any:  # an atol/rtol set for the float32 export is too tight here
        if isinstance(value, Mapping):
            return {k: max(float(v), floor) for k, v in value.items()}
        return None if value is None else max(float(value), floor)

    reason = "float32 outputs get f16 tolerances (or your atol/rtol where wider): the fp16 variant computes in float16"
    return dataclasses.replace(
        policy,
        atol=at_least(policy.atol, widest[0]),
        rtol=at_least(policy.rtol, widest[1]),
        precision_default=widest,
        reason="; ".join(filter(None, [reason, policy.reason])),
    )


def _validate(options: CheckOptions, output_names: Sequence[str]) -> None:
    from ..errors import OnnxParityUsageError

    unknown = sorted({k for v in (options.atol, options.rtol) if isinstance(v, Mapping) for k in v} - set(output_names))
    if unknown:
        raise OnnxParityUsageError(
            f"atol/rtol name output(s) {unknown} that the model does not return; its outputs are {list(output_names)}."
        )
    named = {(v, k) for v, given in options.variant_metrics.items() for k, x in given.items() if isinstance(x, Mapping)}
    unknown = sorted(f"{v}: {k!r}" for v, k in named if k not in output_names)
    if unknown:
        raise OnnxParityUsageError(
            f"variant_metrics names output(s) {unknown} that the model does not return; its outputs are "
            f"{list(output_names)}."
        )
