"""The one place that produces the ONNX file a check runs: an export, the user's file, or the model itself.

:class:`ExportedModel` is what every later step reads; :class:`ExportCache` keeps one export (and one build of
each variant) per model per session, by :func:`cache_key`, and across sessions with ``--onnx-cache-dir``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import graph
from .errors import OnnxParityError

if TYPE_CHECKING:
    from .adapters import PreparedModel
    from .settings import CheckOptions


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    path: str
    exporter: str
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    graph: graph.GraphInfo
    #: ``exported`` (this check), ``reused`` (earlier in the session), ``cached`` (--onnx-cache-dir),
    #: ``user file`` (onnx_model=) or ``model file`` (the model is an .onnx).
    origin: str
    seconds: float = 0.0
    #: The session's cache key of this export (None outside a session): what the model's provider items share.
    key: str | None = None
    #: A variant built from the export (``variants.py``) and the export it was built from.
    variant: str | None = None
    base_path: str | None = None

    def report_fields(self) -> dict[str, Any]:
        """What the export contributes to the report, under its field names."""
        return {
            "export_origin": self.origin,
            "onnx_path": self.path,
            "exporter": self.exporter,
            "opset": self.graph.opset,
            "export_notes": list(self.notes),
            "variant": self.variant,
            "onnx_size_bytes": graph.file_size(self.path),
        }

    @property
    def names_are_ours(self) -> bool:
        """Output names were written by the plugin's export, so they must match the model's."""
        return self.origin in ("exported", "reused", "cached")


def export(
    prepared: PreparedModel, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions, workdir: Path
) -> ExportedModel:
    """Export ``prepared`` into ``workdir`` (or take ``onnx_model=`` / the model's own file) and inspect it."""
    if options.onnx_model is not None:
        info = graph.inspect(options.onnx_model, user_file=True)
        variant = options.variant
        exporter = "user file (onnx_model=" + (f", variant={variant!r})" if variant else ")")
        return ExportedModel(options.onnx_model, exporter, (), (), info, "user file", variant=variant)
    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    result = prepared.export(workdir / "model.onnx", dynamic_axes, options)
    path = result.path or str(workdir / "model.onnx")
    info = graph.inspect(path, user_file=result.path is not None)
    warnings = list(result.warnings)
    if options.opset is not None and info.opset != options.opset and result.path is None:
        warnings.append(
            f"opset={options.opset} was asked for but the exporter wrote opset {info.opset} (it does not export "
            f"opset {options.opset}{'; see the export notes' if result.notes else ''})"
        )
    return ExportedModel(
        path,
        result.exporter,
        tuple(result.notes),
        tuple(warnings),
        info,
        "model file" if result.path else "exported",
        time.perf_counter() - start,
    )


def cache_key(
    test: str, prepared: PreparedModel, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions
) -> str | None:
    """What makes two checks' exports the same graph within a session; None when the model cannot be fingerprinted.

    A user's ``onnx_model=`` file is keyed by its content alone (read once per session; never stored).
    """
    import hashlib
    import json

    if options.onnx_model is not None:
        file = Path(options.onnx_model)
        if not file.is_file():
            return None
        # the same bytes judged as another variant (variant=) are another check of them
        return f"file:{hashlib.sha256(file.read_bytes()).hexdigest()}:{options.variant or ''}"
    fingerprint = getattr(prepared, "fingerprint", None)
    weights = fingerprint() if fingerprint is not None else None
    if weights is None:
        return None
    parts = [
        test,
        weights,
        {name: (list(a.shape), a.dtype.name) for name, a in prepared.example.items()},
        {name: {str(k): v for k, v in axes.items()} for name, axes in dynamic_axes.items()},
        options.opset,
        options.exporter,
        options.signature,
        list(prepared.output_names),
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def persistent_key(key: str | None, prepared: PreparedModel, options: CheckOptions) -> str | None:
    """The key across sessions (``--onnx-cache-dir``): the session's ``key`` (weights already hashed in it) plus
    the versions of the framework, exporter and onnx, and the source files of the model's classes: a changed line
    of model code is another key. None for a user's file (never stored) or a model without a key."""
    import hashlib
    import json

    import onnx

    if key is None or options.onnx_model is not None:
        return None
    parts = [key, prepared.versions(), onnx.__version__, _source_digest(getattr(prepared, "model", None))]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _source_digest(model: Any) -> str:
    """A hash of the source files that define the model's classes (every submodule's, for torch)."""
    import hashlib
    import inspect

    modules = getattr(model, "modules", None)
    classes = {type(m) for m in modules()} if callable(modules) else {type(model)}
    digest = hashlib.sha256()
    for path in sorted({inspect.getsourcefile(c) or c.__qualname__ for c in classes if _has_source(c)}):
        digest.update(path.encode())
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"")
    return digest.hexdigest()


def _has_source(cls: type) -> bool:
    import inspect

    try:
        return inspect.getsourcefile(cls) is not None
    except TypeError:  # built-in classes
        return False


class ExportCache:
    """One export per model per session, keyed by the test, the model's fingerprint and the export options;
    with ``--onnx-cache-dir``, also across sessions (written atomically; xdist workers may share it)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._exports: dict[str, ExportedModel] = {}
        #: Exports actually run (neither reused nor read from the cache), by key: what the tests count.
        self.exports_run: list[str] = []

    def exporter(self, test: str, fresh: bool = False, variant: str | None = None) -> Callable[..., ExportedModel]:
        """The export of a model (one per session), or the ``variant`` built from it (one per session too)."""
        from .variants import build

        base = self._base(test, fresh)

        def get(
            prepared: Any, axes: Mapping[str, Mapping[int, str]], options: CheckOptions, workdir: Path
        ) -> ExportedModel:
            exported = base(prepared, axes, options, workdir)
            if variant is None:
                return exported
            key = f"{exported.key}:{variant}" if exported.key is not None else None
            hit = None if fresh or key is None else self._exports.get(key)
            if hit is not None:
                return dataclasses.replace(hit, origin="reused", seconds=0.0)
            built = build(prepared, exported, variant, options, axes, workdir)
            self.exports_run.append(key or f"{test}:{variant}")
            if key is not None:
                self._exports[key] = built
            return built

        return get

    def _base(self, test: str, fresh: bool) -> Callable[..., ExportedModel]:
        def get(
            prepared: Any, axes: Mapping[str, Mapping[int, str]], options: CheckOptions, workdir: Path
        ) -> ExportedModel:
            key = cache_key(test, prepared, axes, options)
            hit = None if fresh or key is None else self._exports.get(key)
            if hit is not None:
                return dataclasses.replace(hit, origin="reused", seconds=0.0, key=key)
            entry = None
            if self.directory is not None:
                stored = persistent_key(key, prepared, options)
                entry = None if stored is None else self.directory / stored
            exported, unreadable = (None, None) if fresh or entry is None else _read_cached(entry)
            unwritten = None
            if exported is None:
                exported = export(prepared, axes, options, workdir)
                self.exports_run.append(key or test)
                # replace only an entry this process found wanting; any other was written by a concurrent writer
                replace = fresh or unreadable is not None
                unwritten = None if entry is None else _write_cached(entry, exported, replace)
            exported = dataclasses.replace(exported, key=key)
            if key is not None:
                self._exports[key] = exported  # what later items reuse: the cache's troubles are this item's only
            problems = tuple(p for p in (unreadable, unwritten) if p)
            return dataclasses.replace(exported, warnings=exported.warnings + problems) if problems else exported

        return get


def _read_cached(entry: Path) -> tuple[ExportedModel | None, str | None]:
    """The export an ``--onnx-cache-dir`` entry holds (None: no entry), or None and why it cannot be read (a
    truncated file, a protobuf this onnx cannot parse, a hand-edited record): the cache only saves time, so an
    entry it cannot use is a miss that a fresh export replaces, never the check's failure."""
    import json
    import textwrap

    meta = entry / "meta.json"
    if not entry.exists():
        return None, None  # no entry (one without its meta.json is unreadable, and replaced)
    try:
        recorded = json.loads(meta.read_text())
        info = graph.inspect(entry / "model.onnx", user_file=False)
        exported = ExportedModel(
            str(entry / "model.onnx"),
            recorded["exporter"],
            tuple(recorded["notes"]),
            tuple(recorded["warnings"]),
            info,
            "cached",
        )
    except (OSError, ValueError, KeyError, TypeError, OnnxParityError) as exc:
        reason = textwrap.shorten(str(exc).replace(str(entry / "model.onnx"), "model.onnx"), 300, placeholder=" ...")
        return None, (
            f"the --onnx-cache-dir entry {entry} could not be read ({type(exc).__name__}: {reason}); "
            "the model was exported afresh"
        )
    return exported, None


def _write_cached(entry: Path, exported: ExportedModel, replace: bool = False) -> str | None:
    """Write ``entry`` whole or not at all: the model file and the external data files it names are copied into a
    temporary directory beside it, renamed into place. None when written (or left to a writer that won), else why
    not (a warning: the check itself ran on the fresh export).

    The cache may be shared by concurrent sessions (xdist workers, CI machines on one network file system): an
    entry that appeared since this session missed it was written by one of them, from the same key, and is kept
    as it is, since another session may be reading it. Only ``replace`` (an entry this session could not read, or
    one a fresh export disproved) moves the old entry aside first, by a rename, then deletes it."""
    import json
    import os
    import shutil
    import tempfile

    staging: Path | None = None
    aside: Path | None = None
    try:
        if entry.is_dir() and not replace:
            return None  # a concurrent writer won the race: its entry stands
        source = Path(exported.path)
        files = graph.external_files(source)
        outside = sorted(f for f in files if Path(f).is_absolute() or ".." in Path(f).parts)
        if outside:
            raise ValueError(f"its external data files {outside} lie outside the model's folder")
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        umask = os.umask(0o022)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide a shared cache from the other users of it
        shutil.copyfile(source, staging / "model.onnx")
        for name in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.parent / name, staging / name)
        record = {"exporter": exported.exporter, "notes": list(exported.notes), "warnings": list(exported.warnings)}
        (staging / "meta.json").write_text(json.dumps(record))
        if replace and entry.is_dir():
            aside = staging.with_name(f"{staging.name}.old")
            try:
                os.replace(entry, aside)  # atomic: a reader sees the old entry whole, or none
            except FileNotFoundError:  # another session moved it aside first
                aside = None
        try:
            os.replace(staging, entry)
            staging = None
        except OSError:  # a concurrent writer renamed its entry in first (the target is not empty): keep theirs
            pass
    except Exception as exc:
        return f"the export could not be written to the --onnx-cache-dir entry {entry} ({type(exc).__name__}: {exc})"
    finally:
        for leftover in (staging, aside):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    return None
