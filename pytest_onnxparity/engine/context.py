"""What the comparison needs to know about each output besides the two results.

- the reference's own rounding error, element by element: the reference run in float64 where the adapter
  can, and on a copy of the inputs perturbed by one ulp (an ill-conditioned input shows here);
- the positions a mask input marks as padding, whose outputs nobody reads (undefined in both runtimes
  where a causal model sees no real token);
- which outputs do not depend on the inputs at all (a check of them proves nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..adapters import Float64Reference
from ..errors import ModelRejected
from ..judge.compare import NOISE_QUANTILE

if TYPE_CHECKING:
    import numpy as np

    from ..inputs.spec import TensorSpec
    from ..judge.compare import Verdict
    from ..runners import Runner


#: Rounding of the same computation: the float64 run's and the nudged run's typical deviations from the float32
#: reference stay within this factor of each other (both scale with the computation's condition number) ...
AGREEMENT_FACTOR = 100.0
#: ... or within this many float32 epsilons of the output's magnitude (a long, well-conditioned accumulation).
ROUNDING_EPSILONS = 1000.0


def noise(
    reference: Runner,
    feed: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    specs: list[TensorSpec],
    seed: int,
    refused: dict[str, str],
) -> dict[str, np.ndarray]:
    """Per float output: the largest deviation of a float64 run and of a 1-ulp-perturbed run from ``outputs``,
    where both behave like rounding of the same computation (:func:`implausible`); else zero, and ``refused``
    keeps the first reason per output."""
    import numpy as np

    estimates: dict[str, Mapping[str, np.ndarray]] = {}
    if isinstance(reference, Float64Reference):
        precise = reference.infer_float64(feed)
        if precise is not None:
            estimates["the float64 run"] = precise
    perturbed = _perturbed(feed, specs, seed)
    if perturbed is not None:
        try:
            estimates["the run on inputs nudged by 1 ulp"] = reference.infer(perturbed)
        except ModelRejected:
            pass
    out = {}
    for name, value in outputs.items():
        if not (np.issubdtype(value.dtype, np.floating) or value.dtype.name == "bfloat16"):
            continue
        base = value.astype(np.float64)
        deviations, why = {}, None
        for label, estimate in estimates.items():
            other = estimate.get(name)
            if other is None:
                continue
            if other.shape != value.shape:
                why = f"{label} gave shape {tuple(other.shape)}, not {tuple(value.shape)}"
                break
            other = other.astype(np.float64)
            if not np.array_equal(~np.isfinite(other), ~np.isfinite(base)):
                why = f"{label} has NaN/Inf in other places than the float32 reference"
                break
            with np.errstate(invalid="ignore", over="ignore"):
                deviations[label] = np.nan_to_num(np.abs(other - base), posinf=0.0)
        why = why or implausible(deviations, base)
        if why is not None:
            refused.setdefault(name, why)
        zero = np.zeros(value.shape)  # a refused estimate credits nothing: the fixed tolerance alone judges
        out[name] = zero if why is not None else np.maximum.reduce([*deviations.values(), zero])
    return out


def implausible(deviations: Mapping[str, np.ndarray], base: np.ndarray) -> str | None:
    """Why these deviations are not float32 rounding of one computation (None: they are).

    Rounding and a 1-ulp nudge of the inputs both move an output by about its condition number times float32's
    epsilon: two estimates far apart (a float64 path that computes something else, a nudge that crosses a branch)
    are not noise. A lone estimate is held to ``ROUNDING_EPSILONS`` epsilons of the output's magnitude.
    """
    import numpy as np

    finite = np.isfinite(base)
    if not finite.any() or not deviations:
        return None
    scale = float(np.abs(base[finite]).max())
    floor = ROUNDING_EPSILONS * float(np.finfo(np.float32).eps) * scale
    levels = {label: float(np.quantile(d[finite], NOISE_QUANTILE)) for label, d in deviations.items()}
    (high_label, high), *rest = sorted(levels.items(), key=lambda item: -item[1])
    low = rest[0][1] if rest else 0.0
    bound = (AGREEMENT_FACTOR * low if rest else 0.0) + floor
    if high <= bound:
        return None
    against = f"{rest[0][0]} moves it by {low:.3g}" if rest else "no second estimate"
    return (
        f"{high_label} moves it by {high:.3g} (typical), {against}; float32 rounding of an output of magnitude "
        f"{scale:.3g} plausibly reaches {bound:.3g}"
    )


def _perturbed(feed: Mapping[str, np.ndarray], specs: list[TensorSpec], seed: int) -> dict[str, np.ndarray] | None:
    """The float inputs moved by one unit in the last place, in random directions (None: no float input)."""
    import numpy as np

    floats = [s.name for s in specs if s.kind == "float"]
    if not floats:
        return None
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 7919])
    out = dict(feed)
    for name in floats:
        value = feed[name].astype(np.float64)
        eps = float(np.finfo(np.float32 if feed[name].dtype.name == "bfloat16" else feed[name].dtype).eps)
        # one ulp of each element, or of the tensor's magnitude where it is an exact zero (a relative nudge of
        # zero is zero, and an all-zeros input would look perfectly conditioned)
        magnitude = float(np.abs(value).max(initial=0.0)) or 1.0
        step = eps * np.where(value != 0, np.abs(value), magnitude)
        out[name] = (value + np.where(rng.random(value.shape) < 0.5, -step, step)).astype(feed[name].dtype)
    return out


def padding(
    feed: Mapping[str, np.ndarray],
    specs: list[TensorSpec],
    outputs: Mapping[str, np.ndarray],
    declared: Mapping[str, list[Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Per output that carries a mask's (batch, sequence) axes: where the mask says padding.

    ``declared`` (the graph's dims by input and output name) decides which outputs carry the mask's axes where
    it names them (``['batch', 'seq', 32]``): a decoder output over another sequence does not. Where the graph
    names nothing, an output carries them when it starts with the mask's shape and has more axes (an output of
    just the mask's shape, a pooled (batch, classes) one that happens to match it, is compared in full).
    """
    import numpy as np

    declared = declared or {}
    pads = []
    for spec in specs:
        value = feed[spec.name]
        if spec.is_mask and value.ndim >= 2:
            pads.append((spec.name, value.astype(bool) if spec.kind == "bool" else value == 0))
    out = {}
    for name, value in outputs.items():
        for mask, pad in pads:
            named = [d for d in [*declared.get(name, [])[:2], *declared.get(mask, [])[:2]] if isinstance(d, str)]
            carries = declared[name][:2] == declared[mask][:2] if len(named) == 4 else value.ndim > pad.ndim
            if carries and value.shape[: pad.ndim] == pad.shape and pad.any():
                out[name] = np.asarray(pad).reshape(pad.shape + (1,) * (value.ndim - pad.ndim))
                break
    return out


@dataclasses.dataclass
class Dependence:
    """Does each output change with the inputs beyond its tolerance? (Compared within one output shape.)"""

    first: dict[tuple[str, tuple[int, ...]], Any] = dataclasses.field(default_factory=dict)
    #: Outputs seen on at least two input sets of one shape (only those can be judged constant).
    compared: set[str] = dataclasses.field(default_factory=set)
    varies: set[str] = dataclasses.field(default_factory=set)
    #: Outputs where the allowance was smaller than the output itself on some input (a check that could fail).
    meaningful: set[str] = dataclasses.field(default_factory=set)

    def observe_verdict(self, reference: Mapping[str, np.ndarray], verdict: Verdict, noise_factor: float) -> None:
        """Every output of one input set, with the allowance its figures say it was judged with."""
        import numpy as np

        for figures in verdict.outputs:
            value = reference[figures.name]
            magnitude = float(np.abs(value.astype(np.float64)).max(initial=0.0))
            self.observe(figures.name, value, (figures.atol + figures.rtol) * magnitude + noise_factor * figures.noise)

    def observe(self, name: str, value: np.ndarray, allowed: float) -> None:
        """One input set's reference output and the largest allowance it was judged with."""
        import numpy as np

        magnitude = float(np.abs(value.astype(np.float64)).max()) if value.size else 0.0
        if magnitude > allowed:
            self.meaningful.add(name)
        first = self.first.setdefault((name, tuple(value.shape)), value)
        if first is value or not value.size:
            return
        self.compared.add(name)
        if float(np.abs(value.astype(np.float64) - first.astype(np.float64)).max()) > allowed:
            self.varies.add(name)

    def warnings(self) -> list[str]:
        out = []
        for name in sorted(self.compared - self.varies):
            out.append(
                f"output {name!r} is the same (within tolerance) for every input checked: it does not depend "
                "on the inputs, so no conversion defect upstream of it could fail this check (an untrained "
                "model with a constant output, a dead branch?)"
            )
        for name in sorted({n for n, _ in self.first} - self.meaningful):
            out.append(
                f"the tolerance of output {name!r} is as large as the output itself on every input: no "
                "conversion could fail this check (the outputs are tiny, or the inputs ill-conditioned)"
            )
        return out
