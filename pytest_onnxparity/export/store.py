"""The store behind ``--onnx-cache-dir``: one directory per export, named by :func:`persistent_key`, holding the
graph, the external data files it names and ``meta.json`` (a record plus the sha256 of each file).

An entry is written whole or not at all (copied into a staging directory, renamed into place) and read only as
written (every file's digest checked). Staging directories a killed writer left behind are removed by the next
session. Knows nothing of how an export is made or judged: ``cache.py`` stores and reads through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..graph import info as graph

if TYPE_CHECKING:
    from ..adapters import PreparedModel
    from ..options.settings import CheckOptions

#: A staging directory older than this is left over whoever wrote it (copying one entry takes seconds to minutes).
STALE_STAGING_SECONDS = 3600.0


def persistent_key(key: str | None, prepared: PreparedModel, options: CheckOptions) -> str | None:
    """The key across sessions (``--onnx-cache-dir``): the session's ``key`` (weights already hashed in it) plus
    the versions of the framework, exporter and onnx, and the contents of every user source file the export
    depends on: those that define the model's classes and those its run on the example executed (a helper
    in another module included; ``sources.py``): a changed line of that code is another key. None for a user's
    file (never stored) or a model without a key."""
    import hashlib
    import json

    import onnx

    from ..adapters import sources, user_code

    if key is None or options.onnx_model is not None:
        return None
    model, code_files = user_code(prepared)
    files = _class_files(model) | code_files
    parts = [key, prepared.versions(), onnx.__version__, sources.digest(files)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _class_files(model: Any) -> frozenset[str]:
    """The source files that define the model's classes (every submodule's, for torch)."""
    import inspect

    modules = getattr(model, "modules", None)
    classes = {type(m) for m in modules()} if callable(modules) else {type(model)}
    return frozenset(inspect.getsourcefile(c) or c.__qualname__ for c in classes if _has_source(c))


def _has_source(cls: type) -> bool:
    import inspect

    try:
        return inspect.getsourcefile(cls) is not None
    except TypeError:  # built-in classes
        return False


class EntryChanged(Exception):
    """A file of a cache entry is not the one written there (its digest differs, or it is gone)."""


def read(entry: Path) -> dict[str, Any] | None:
    """The record of ``entry`` (None: no entry) once every file it lists hashes as written; raises
    :class:`EntryChanged` for a file edited or swapped since (a look-alike graph), ``OSError`` / ``ValueError`` /
    ``TypeError`` / ``KeyError`` for a record that cannot be read."""
    import json

    if not entry.exists():
        return None  # no entry (one without its meta.json is unreadable, and replaced)
    record = json.loads((entry / "meta.json").read_text())
    files = record["files"]
    if not isinstance(files, Mapping) or "model.onnx" not in files:
        raise TypeError("its record lists no digest of model.onnx (written by an older version?)")
    for name, recorded in sorted(files.items()):
        path = entry / name
        if not path.is_file():
            raise EntryChanged(f"{name} is gone")
        if _digest(path) != recorded:
            raise EntryChanged(f"{name} differs from what was written: its sha256 is not the one recorded")
    return dict(record)


def write(entry: Path, source: Path, record: Mapping[str, Any], replace: bool = False) -> None:
    """Store the graph at ``source``, the external data files it names and ``record`` as ``entry``, whole or not at
    all: copied into a staging directory beside it (named after this process, so a later session can tell one a
    killed writer left), with the digest of each file, then renamed into place. Raises why it could not.

    The cache may be shared by concurrent sessions (xdist workers, CI machines on one network file system): an
    entry that appeared since this session missed it was written by one of them, from the same key, and is kept
    as it is, since another session may be reading it. Only ``replace`` (an entry this session could not read, or
    one a fresh export disproved) moves the old entry aside first, by a rename, then deletes it."""
    import json
    import os
    import shutil
    import tempfile

    files = graph.external_files(source)
    outside = sorted(f for f in files if Path(f).is_absolute() or ".." in Path(f).parts)
    if outside:
        raise ValueError(f"its external data files {outside} lie outside the model's folder")
    if entry.is_dir() and not replace:
        return  # a concurrent writer won the race: its entry stands
    entry.parent.mkdir(parents=True, exist_ok=True)
    created = Path(tempfile.mkdtemp(prefix=_staging_prefix(), dir=entry.parent))
    staging: Path | None = created
    aside: Path | None = None
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        created.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide a shared cache from the other users of it
        shutil.copyfile(source, created / "model.onnx")
        for name in files:
            (created / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.parent / name, created / name)
        digests = {name: _digest(created / name) for name in ["model.onnx", *sorted(files)]}
        (created / "meta.json").write_text(json.dumps({**record, "files": digests}))
        if replace and entry.is_dir():
            aside = created.with_name(f"{created.name}.old")
            try:
                os.replace(entry, aside)  # atomic: a reader sees the old entry whole, or none
            except FileNotFoundError:  # another session moved it aside first
                aside = None
        try:
            os.replace(created, entry)
            staging = None
        except OSError:  # a concurrent writer renamed its entry in first (the target is not empty): keep theirs
            pass
    finally:
        for leftover in (staging, aside):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)


def _digest(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _staging_prefix() -> str:
    """``.staging-<host>-<pid>-``: who is writing, so a later session can tell a writer that was killed."""
    import os

    return f".staging-{_host()}-{os.getpid()}-"


def _host() -> str:
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())


def remove_stale_staging(directory: Path) -> list[Path]:
    """Remove the staging directories a killed writer left in ``directory`` (SIGKILL, power loss): those of a
    process of this host that no longer runs, and any older than :data:`STALE_STAGING_SECONDS` (another host's,
    an older version's ``.<key>.*``). A live writer's is left alone. Returns what was removed."""
    import re
    import shutil
    import time

    host, removed = _host(), []
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(".") and p.is_dir()]
    except OSError:
        return []
    for path in candidates:
        mine = re.fullmatch(r"\.staging-(.+)-(\d+)-\w+", path.name)
        old_style = re.fullmatch(r"\.[0-9a-f]{64}\.\w+", path.name)
        if not (mine or old_style):
            continue
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue
        dead = mine is not None and mine.group(1) == host and not _running(int(mine.group(2)))
        if dead or age > STALE_STAGING_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
