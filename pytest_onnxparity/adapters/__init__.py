"""Framework adapters: each turns a user's model into a :class:`PreparedModel` the engine can drive.

An adapter knows its framework (how to call the model, how to export it) and nothing about how results
are compared or reported. Selection looks at ``sys.modules`` first, so a framework is only imported when
the model already comes from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ..errors import ModelRejected, OnnxParityError, OnnxParityUsageError

if TYPE_CHECKING:
    import numpy as np

    from ..options.settings import CheckOptions


@dataclasses.dataclass
class ExportResult:
    """What an export produced: the exporter that succeeded and anything the user should know.

    ``path`` is set by adapters whose model already is an ONNX file (nothing is written).
    """

    exporter: str
    #: What the user should be able to read (an exporter's reasons for failing, its warnings).
    notes: list[str] = dataclasses.field(default_factory=list)
    #: What makes the check less trustworthy (a fallback exporter that traces one input).
    warnings: list[str] = dataclasses.field(default_factory=list)
    path: str | None = None


class ModuleValues(NamedTuple):
    """What one module (torch) or layer (Keras) computed on an input: localization's reference values."""

    name: str
    #: ``torch.nn.Linear``, ``keras.src.layers.core.dense.Dense``.
    kind: str
    outputs: list[np.ndarray]
    #: Its input tensors, where the framework hands them to a hook (torch); they give a reference to the values
    #: that ops between two modules compute (a functional call such as ``F.interpolate``).
    inputs: Sequence[np.ndarray] = ()


class PreparedModel(Protocol):
    """A framework model bound to its example inputs: the reference runner of a check, and its exporter.

    ``infer`` raises :class:`~pytest_onnxparity.errors.ModelRejected` only for an exception raised inside
    the user's model (an input outside what it accepts); any other exception is a real error.
    """

    #: The runner's name: the framework (``torch``, ``tensorflow``) or ``onnxruntime-cpu``.
    name: str
    #: Example inputs as numpy (the plugin's own copies), keyed by input name, in the model's input order.
    example: dict[str, np.ndarray]
    output_names: tuple[str, ...]
    #: True when the names come from the user or from the model's own structure (dict keys, Keras names).
    output_names_meaningful: bool
    #: Sizes an integer input may index (embedding tables): the generator's upper bounds for ids.
    int_high_hints: tuple[int, ...]
    #: Axes the model itself declares dynamic (Keras ``None`` dims), beyond the default batch axis.
    model_dynamic_axes: dict[str, dict[int, str]]
    #: The longest sequence the model takes (a position table, a transformers config), or None.
    sequence_limit: int | None

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on its own copy of ``feed``; outputs as numpy keyed by ``output_names``."""
        ...

    def export(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions) -> ExportResult:
        """Write the ONNX model to ``path``; raise :class:`OnnxParityError` with the exporter's reason."""
        ...

    def place(self, provider: str) -> str:
        """Run reference inferences on the device matching ``provider`` where possible; return that device."""
        ...

    def timed_call(self, feed: Mapping[str, np.ndarray]) -> tuple[Callable[[], Any], str]:
        """A zero-argument call running the model as a deployment would (compiled where the framework
        compiles), inputs prepared beforehand, outputs fetched to host memory (which waits for device
        work), and a description of what it times: what the benchmark measures."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the framework and exporter, for reports."""
        ...

    def fingerprint(self) -> str | None:
        """What the export depends on besides the options (weights, structure); None: never reuse an export."""
        ...

    def close(self) -> None:
        """Undo anything done to the user's model (training mode, parameters and buffers)."""
        ...


# Optional capabilities: an adapter that has one declares it by having the member (checked with isinstance, so a
# hook-added adapter without them still works: the engine then does without).


@runtime_checkable
class Float64Reference(Protocol):
    """The model run in float64 on the same inputs: how far the float32 reference's own rounding error reaches."""

    def infer_float64(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Outputs of a float64 copy of the model, keyed like ``infer``'s; None where none can be made."""
        ...


@runtime_checkable
class LayerOutputs(Protocol):
    """Every module's (layer's) output on a feed: what localization walks."""

    def intermediates(self, feed: Mapping[str, np.ndarray]) -> list[ModuleValues]:
        """(module or layer name, its class, its outputs) for each, in execution order."""
        ...


@runtime_checkable
class LengthLimits(Protocol):
    """Other lengths a sequence axis may be bounded by (position buffers, ``max_len`` attributes)."""

    length_limits: tuple[int, ...]


@runtime_checkable
class UserCode(Protocol):
    """The user's model object and the source files its run on the example executed (the export cache's key)."""

    model: Any
    code_files: frozenset[str]


@runtime_checkable
class TokenIds(Protocol):
    """A tokenizer's special ids (``pad``, ``bos``, ``eos``): placed where a tokenizer places them."""

    special_ids: dict[str, int]


def float64_outputs(prepared: PreparedModel, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The model's float64 outputs on ``feed``, or None where the adapter cannot make them."""
    return prepared.infer_float64(feed) if isinstance(prepared, Float64Reference) else None


def layer_outputs(prepared: PreparedModel, feed: Mapping[str, np.ndarray]) -> list[ModuleValues]:
    """The model's module or layer outputs on ``feed`` ([] where the adapter cannot walk them)."""
    return prepared.intermediates(feed) if isinstance(prepared, LayerOutputs) else []


def length_limits(prepared: PreparedModel) -> tuple[int, ...]:
    """The lengths a sequence axis of the model may be bounded by besides ``sequence_limit`` (() if none known)."""
    return tuple(prepared.length_limits) if isinstance(prepared, LengthLimits) else ()


def user_code(prepared: PreparedModel) -> tuple[Any, frozenset[str]]:
    """The user's model object (None where there is none, as for an ONNX file) and the user source files its run
    on the example executed."""
    return (prepared.model, frozenset(prepared.code_files)) if isinstance(prepared, UserCode) else (None, frozenset())


def special_ids(prepared: PreparedModel) -> dict[str, int]:
    """The model's pad / bos / eos token ids, where it has them."""
    return dict(prepared.special_ids) if isinstance(prepared, TokenIds) else {}


def _is_torch_model(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_tensorflow_model(model: Any) -> bool:
    if isinstance(model, (str, os.PathLike)):
        return (Path(model) / "saved_model.pb").is_file()
    if type(model).__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow"):
        return True
    # Subclassed Keras models live in the user's module: look at their bases.
    bases = [sys.modules[name].Model for name in ("keras", "tf_keras") if name in sys.modules]
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        bases.append(tf.Module)
    return bool(bases) and isinstance(model, tuple(bases))


def _is_onnx_file(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".onnx")


#: (framework, detector, module), tried in order; a detector never imports its framework.
ADAPTERS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("torch", _is_torch_model, "pytest_onnxparity.adapters.torch"),
    ("tensorflow", _is_tensorflow_model, "pytest_onnxparity.adapters.tensorflow"),
    ("onnx", _is_onnx_file, "pytest_onnxparity.adapters.onnx_file"),
]


def prepare(
    model: Any,
    example_inputs: Any,
    options: CheckOptions,
    extra: Sequence[tuple[str, Callable[[Any], bool], str]] = (),
) -> PreparedModel:
    """Pick the adapter for ``model`` from its type (``extra`` ones first) and bind it to ``example_inputs``."""
    for _, detect, module in [*extra, *ADAPTERS]:
        if detect(model):
            prepared: PreparedModel = importlib.import_module(module).prepare(model, example_inputs, options)
            return prepared
    hint = ""
    if isinstance(model, (str, os.PathLike)):
        hint = (
            f" {os.fspath(model)!r} is a path but neither a SavedModel directory (no saved_model.pb) nor an .onnx "
            "file; to check an exported .onnx against its framework model, pass the model first and the file as "
            "onnx_model=..."
        )
    raise OnnxParityUsageError(
        f"onnx_parity() cannot check an object of type {type(model).__module__}.{type(model).__qualname__}: "
        "pass a torch.nn.Module, a Keras model, a tf.function / tf.Module, a SavedModel directory, or an .onnx "
        "file (checked against ONNX Runtime's CPU provider)." + hint
    )


def input_names(user: Sequence[str] | None, derived: Sequence[str]) -> tuple[str, ...]:
    """The user's input names when given (checked against the count), else the derived ones."""
    if user is None:
        return tuple(derived)
    if len(user) != len(derived):
        raise OnnxParityUsageError(
            f"input_names has {len(user)} name(s) {list(user)} but the model takes {len(derived)} input(s) "
            f"{list(derived)}; give one name per example input."
        )
    return tuple(user)


def outputs_on_example(
    run_example: Callable[[], list[tuple[str, Any]]],
) -> tuple[list[tuple[str, Any]], frozenset[str]]:
    """The model's named outputs on its own example, and the user's source files that run executed (the model's
    code and every helper it calls: what its export depends on); a model that cannot run it is the user's error."""
    from .sources import recording

    try:
        with recording() as code_files:
            named = run_example()
    except OnnxParityError:
        raise
    except Exception as exc:
        exc = exc.cause if isinstance(exc, ModelRejected) and isinstance(exc.cause, Exception) else exc
        raise OnnxParityUsageError(
            f"the model raised on its own example_inputs, so there is nothing to compare against: "
            f"{short_error(exc)}. Fix the model or the example inputs so that the model runs on them."
        ) from exc
    if not named:
        raise OnnxParityUsageError("the model returned no tensors; ONNX export needs at least one output tensor.")
    return named, frozenset(code_files)


def call_model(
    call: Callable[[], Any], flatten: Callable[[Any], list[tuple[str, Any]]], structure: Sequence[str]
) -> list[tuple[str, Any]]:
    """Run the user's model: what it raises is its rejection of the input (not compared, counted); an output
    structure other than the example's cannot be what a fixed ONNX graph returns."""
    try:
        result = call()
    except Exception as exc:  # raised inside the user's model: an input outside what it accepts
        raise ModelRejected(exc) from exc
    named = flatten(result)
    if [n for n, _ in named] != list(structure):
        raise OnnxParityError(
            f"the model returned the outputs {[n for n, _ in named]} here but {list(structure)} on the example: an "
            "ONNX graph has a fixed set of outputs, so an output structure that depends on the input (a "
            "variable-length list) cannot be exported faithfully. Return a fixed structure (stack the list)."
        )
    return named


def positional_names(names: Sequence[str]) -> bool:
    """True when output names only say where an output sits (``output``, ``output_0``), not what it is."""
    return all(re.fullmatch(r"output(_\d+)*", n) for n in names)


def output_names(user: Sequence[str] | None, derived: Sequence[str]) -> tuple[str, ...]:
    """The user's output names when given (checked against the count), else the derived ones."""
    if user is not None and len(user) != len(derived):
        raise OnnxParityUsageError(
            f"output_names has {len(user)} name(s) {list(user)} but the model returns {len(derived)} tensor(s) "
            f"{list(derived)}; give one name per output tensor."
        )
    return tuple(user if user is not None else derived)


def short_error(exc: BaseException, limit: int = 1500) -> str:
    """``Type: message`` without terminal colours, cut to ``limit`` characters (exporter errors run long)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}").strip()
    return text if len(text) <= limit else text[:limit] + " ... [truncated]"


#: OS errors that mean the exported file could not be written, not that the model cannot be exported: why, briefly.
_WRITE_ERRORS = {
    errno.EFBIG: "the file is larger than the file size limit (ulimit -f) or the file system allows",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "the folder is not writable",
    errno.EPERM: "the folder is not writable",
    errno.EROFS: "the file system is read-only",
}


def write_error(exc: BaseException, path: Path, exporter: str) -> OnnxParityError | None:
    """The error to raise when ``exc`` (or what it was raised from) is the OS refusing to write the ONNX file at
    ``path`` (another exporter would fail alike, so none is tried); None when it is about the model."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRORS:
            named = seen.filename
            if named is None or Path(os.fsdecode(named)).resolve().parent == path.resolve().parent:
                why = _WRITE_ERRORS[seen.errno]
                return OnnxParityError(
                    f"{exporter} could not write the ONNX file {path}: {short_error(seen, 300)} ({why}); the model "
                    f"itself was not the problem.\n  Fix: free space or raise the limit where {path.parent} lives, "
                    "or give pytest a temporary folder on a disk with room that you can write (--basetemp=DIR)."
                )
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def quiet(*logger_names: str) -> Iterator[list[str]]:
    """Exporters print progress, log and warn a lot: keep it out of the user's test output while they run.

    Yields a list that receives the warnings' messages, so the caller can pass on the ones that matter.
    """
    loggers = [logging.getLogger(n) for n in logger_names]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
        lg.propagate = False
    said: list[str] = []
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield said
            finally:
                said.extend(dict.fromkeys(str(w.message) for w in caught))
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.setLevel(level)
            lg.propagate = propagate
