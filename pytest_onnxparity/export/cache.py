"""One export per model per session, and across sessions: :class:`ExportCache` keeps one export (and one build of
each variant) per model per session, by :func:`cache_key`, and across sessions with ``--onnx-cache-dir``
(by :func:`persistent_key`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError
from ..graph import info as graph
from .exported import ExportedModel, export

if TYPE_CHECKING:
    from ..adapters import PreparedModel
    from ..options.settings import CheckOptions


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
    weights = prepared.fingerprint()
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


class ExportCache:
    """One export per model per session, keyed by the test, the model's fingerprint and the export options;
    with ``--onnx-cache-dir``, also across sessions (written atomically; xdist workers may share it).

    A cache directory this process cannot write is read only: its entries are used, new exports are not stored
    (the plugin says so once, at the start). Staging directories that a killed writer left are removed."""

    def __init__(self, directory: Path | None = None) -> None:
        import os

        from .store import remove_stale_staging

        self.directory = directory
        self.read_only = directory is not None and directory.is_dir() and not os.access(directory, os.W_OK)
        if directory is not None and not self.read_only:
            remove_stale_staging(directory)
        self._exports: dict[str, ExportedModel] = {}

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
                from .store import persistent_key

                stored = persistent_key(key, prepared, options)
                entry = None if stored is None else self.directory / stored
            exported, unreadable = (None, None) if fresh or entry is None else _read_cached(entry)
            unwritten = None
            if exported is None:
                exported = export(prepared, axes, options, workdir)
                # replace only an entry this process found wanting; any other was written by a concurrent writer
                replace = fresh or unreadable is not None
                unwritten = None if entry is None or self.read_only else _write_cached(entry, exported, replace)
            exported = dataclasses.replace(exported, key=key)
            if key is not None:
                self._exports[key] = exported  # what later items reuse: the cache's troubles are this item's only
            problems = tuple(p for p in (unreadable, unwritten) if p)
            return dataclasses.replace(exported, warnings=exported.warnings + problems) if problems else exported

        return get


def _read_cached(entry: Path) -> tuple[ExportedModel | None, str | None]:
    """The export an ``--onnx-cache-dir`` entry holds (None: no entry), or None and why it cannot be used (a
    truncated file, a protobuf this onnx cannot parse, a hand-edited record, a file that is not the one written):
    the cache only saves time, so an entry it cannot use is a miss that a fresh export replaces, never the
    check's failure."""
    import textwrap

    from .store import EntryChanged, read

    try:
        record = read(entry)
        if record is None:
            return None, None
        info = graph.inspect(entry / "model.onnx", user_file=False)
        exported = ExportedModel(
            str(entry / "model.onnx"),
            record["exporter"],
            tuple(record["notes"]),
            tuple(record["warnings"]),
            info,
            "cached",
        )
    except EntryChanged as exc:
        return None, (
            f"the --onnx-cache-dir entry {entry} was changed after it was written ({exc}): an entry is used only as "
            "written; the model was exported afresh"
        )
    except (OSError, ValueError, KeyError, TypeError, OnnxParityError) as exc:
        reason = textwrap.shorten(str(exc).replace(str(entry / "model.onnx"), "model.onnx"), 300, placeholder=" ...")
        return None, (
            f"the --onnx-cache-dir entry {entry} could not be read ({type(exc).__name__}: {reason}); "
            "the model was exported afresh"
        )
    return exported, None


def _write_cached(entry: Path, exported: ExportedModel, replace: bool = False) -> str | None:
    """Store ``exported`` as ``entry`` (whole or not at all; an entry a concurrent writer left stands unless
    ``replace``); None when written or left to the writer that won, else why not (a warning: the check itself ran
    on the fresh export)."""
    from .store import write

    record = {"exporter": exported.exporter, "notes": list(exported.notes), "warnings": list(exported.warnings)}
    try:
        write(entry, Path(exported.path), record, replace)
    except Exception as exc:
        return f"the export could not be written to the --onnx-cache-dir entry {entry} ({type(exc).__name__}: {exc})"
    return None
