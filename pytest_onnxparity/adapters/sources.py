"""Which of the user's source files a model's code runs in, and a digest of them: what an export kept across
sessions (``--onnx-cache-dir``) depends on besides the weights, the options and the installed packages.

The files that define a model's classes are not enough: its ``forward`` may call a helper in another module,
and a changed helper is another graph. So the adapters run the model on its example under
:func:`recording`, which notes the file of every Python function called; the export traces that same run.
Standard library only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """Yield a set that, once the block ends, holds the user's source files of every Python function called in it
    (installed packages, the standard library and the plugin itself left out)."""
    called: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            called.add(frame.f_code.co_filename)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield called
    finally:
        sys.setprofile(previous)
        mine = {name for name in called if is_user_code(name)}
        called.clear()
        called.update(mine)


@functools.cache
def _installed() -> tuple[str, ...]:
    """Folders whose files are installed packages or Python itself (a change there changes a version in the key)."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix, site.getusersitepackages(), *site.getsitepackages()}
    roots.add(str(Path(__file__).parent))  # the plugin's own functions that call the model
    return tuple(str(Path(r).resolve()) + "/" for r in roots if r)


def is_user_code(filename: str) -> bool:
    """A real file outside installed packages and Python (``<string>``, ``<frozen ...>`` are not files)."""
    if filename.startswith("<"):
        return False
    resolved = str(Path(filename).resolve())
    return not resolved.startswith(_installed())


def digest(files: Iterable[str]) -> str:
    """A hash of the files' names and contents (a file gone hashes as empty: another key)."""
    out = hashlib.sha256()
    for path in sorted(set(files)):
        out.update(path.encode() + b"\0")
        file = Path(path)
        out.update(file.read_bytes() if file.is_file() else b"")
        out.update(b"\0")
    return out.hexdigest()
