"""ONNX Runtime in a worker process: a crash there (an abort, a segmentation fault) or a hang fails the one check
that caused it, never the pytest session.

ONNX Runtime can abort the whole process instead of raising: its LSTM on 0 rows does, including 0 rows that a
boolean mask selected inside the graph from a non-empty input. Which input does that cannot be told from its shape,
so every session a check compares with is opened, and every input set run, in one long-lived child process per
pytest process (started on first use, about 0.5 s; started again after a death). A runner here is a handle on a
runner there (:class:`RemoteRunner`); its arrays cross a pipe (microseconds for the sizes a check draws).

The child's side is ``serve.py``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError
from . import Deferred, watchdog

if TYPE_CHECKING:
    import numpy as np

    from .onnxruntime import OrtRunner

#: Seconds a request may take when no watchdog limits the call (opening a large model's session included).
DEFAULT_TIMEOUT = 300.0
#: Seconds the child gets to end on its own at the session's end.
GRACE = 5.0


class Crashed(OnnxParityError):
    """ONNX Runtime died (a signal, an abort) on the input instead of raising, or never answered."""


class _Worker:
    """The child process and the two pipes to it; started on demand, stopped when a call is cut short."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Any = None
        self._stderr: Any = None
        #: Bumped at each start: a runner opened in an earlier child is opened again in the new one.
        self.generation = 0
        #: Runners closed (or collected) here since the last request: the child releases them on the next one.
        self.dropped: list[int] = []

    def drop(self, key: int, generation: int) -> None:
        """Release runner ``key`` in the child with its next request (never from here: a finalizer may run while a
        request is under way)."""
        if self.serves(generation):
            self.dropped.append(key)

    def call(self, request: tuple[Any, ...]) -> Any:
        """Send ``request``, return the reply's value; raise what the child raised, :class:`Crashed` when it died,
        :class:`watchdog.Hung` when it did not answer in time (the child is then killed)."""
        self._start()
        conn = self._conn
        dropped, self.dropped = self.dropped, []
        try:
            conn.send((dropped, *request))
            bounded = watchdog.remaining()
            wait = DEFAULT_TIMEOUT if bounded is None else bounded + 1.0
            if not conn.poll(wait):
                if bounded is None:
                    raise Crashed(self._hung(wait))
                raise watchdog.Hung(self._hung(wait), wait)
            status, value = conn.recv()
        except watchdog.Hung as exc:  # the watchdog's signal came while this process waited: the child's stack
            if self._process is None:
                raise
            raise watchdog.Hung(self._hung(exc.seconds), exc.seconds) from None
        except (EOFError, OSError):
            raise self._died("opening a session on this graph" if request[0] == "open" else "on this input") from None
        except BaseException:  # cut short (Ctrl-C): the child's state is unknown
            self.stop()
            raise
        if status == "error":
            raise _rebuilt(*value)
        return value

    def serves(self, generation: int) -> bool:
        """The child a runner was opened in (of that ``generation``) is still the one running."""
        return generation == self.generation and self._process is not None

    def _start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        from multiprocessing.connection import Connection

        self.stop()
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}.serve", str(child_reads), str(child_writes)],
            pass_fds=(child_reads, child_writes),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(child_reads)
        os.close(child_writes)
        self._conn = _Pipe(Connection(parent_reads, writable=False), Connection(parent_writes, readable=False))
        self.generation += 1

    def _hung(self, seconds: float) -> str:
        """What the message of a hung child says: how long it was given, its stack (then it is killed)."""
        return f"ONNX Runtime did not return within {seconds:g} s (in the worker process); its stack:\n{self._stack()}"

    def _stack(self) -> str:
        """The child's Python stack (faulthandler on SIGUSR1), before it is killed."""
        assert self._process is not None and self._stderr is not None
        start = self._stderr.seek(0, os.SEEK_END)  # what it wrote before is not the stack
        self._process.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        stack = self._tail(4000, start)
        self.stop()
        return stack.strip() or "(no Python stack: the child is in native code)"

    def _tail(self, size: int, start: int = 0) -> str:
        """The last ``size`` bytes the child wrote to its stderr (from ``start`` on)."""
        assert self._stderr is not None
        end = self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(start, end - size))
        return self._stderr.read().decode(errors="replace")

    def _died(self, doing: str) -> Crashed:
        assert self._process is not None
        code = self._process.wait()
        said = self._tail(500).strip()
        self.stop()
        how = f"with {signal.Signals(-code).name}" if code < 0 else f"(exit status {code})"
        return Crashed(
            f"ONNX Runtime crashed {how} {doing} (in the worker process, so only this check "
            f"failed){': ' + said if said else ''}"
        )

    def stop(self, kill: bool = True) -> None:
        """End the child (a later call starts a fresh one); ``kill=False`` lets it finish on its own first (its
        runners' graph copies removed), for up to ``GRACE`` seconds."""
        self.dropped.clear()  # released with their child
        if self._conn is not None:
            self._conn.close()  # the child sees the end of its requests and returns
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=0 if kill else GRACE)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class _Pipe:
    """Two one-way connections used as one."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader, self.writer = reader, writer

    def send(self, value: Any) -> None:
        self.writer.send(value)

    def poll(self, timeout: float) -> bool:
        return bool(self.reader.poll(timeout))

    def recv(self) -> Any:
        return self.reader.recv()

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


_WORKER = _Worker()
atexit.register(_WORKER.stop, kill=False)
_IDS = itertools.count()


def stop() -> None:
    """End the worker process (the session's end; a later check starts a fresh one)."""
    _WORKER.stop(kill=False)


class RemoteRunner:
    """An :class:`~.onnxruntime.OrtRunner` that lives in the worker process; same constructor, same facts."""

    def __init__(self, path: str, provider: str = "cpu", options: Mapping[str, str] | None = None, **kwargs: Any):
        from ..providers import precision

        self.path, self.provider, self.options = os.fspath(path), provider, dict(options or {})
        self.name = f"onnxruntime-{provider}"
        self.precision = precision.precision(provider, self.options)
        self._kwargs = kwargs
        self._id = next(_IDS)
        self._generation = -1
        self._release: weakref.finalize[Any, Any] | None = None
        self._opened()

    def _opened(self) -> None:
        """Open the runner in the current child (again, after a restart: sessions do not survive their process)."""
        if _WORKER.serves(self._generation):
            return
        request = ("open", self._id, self.path, self.provider, self.options, self._kwargs)
        facts = _WORKER.call(request)
        self._generation = _WORKER.generation
        if self._release is not None:
            self._release.detach()  # its child is gone, and the session with it
        self._release = weakref.finalize(self, _WORKER.drop, self._id, self._generation)
        self.input_names, self.output_names = facts["input_names"], facts["output_names"]
        self.feed_names: dict[str, str] = facts["feed_names"]
        self._facts = facts

    @property
    def placement(self) -> Any:
        return self._facts["placement"]

    @property
    def log(self) -> list[str]:
        return list(self._facts["report"]["provider_log"])

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._opened()
        arrays = {key: feed[key] for key in self.feed_names.values()}
        outputs, facts = _WORKER.call(("infer", self._id, arrays))
        if facts is not None:  # the first run was profiled: where each node ran, what the provider logged
            self._facts = {**self._facts, **facts}
        return dict(outputs)

    def report_fields(self) -> dict[str, Any]:
        return dict(self._facts["report"])

    def session_options(self) -> dict[str, Any]:
        return dict(self._facts["session_options"])

    def close(self) -> None:
        """Release the session in the child (a check's runners go when it ends, not at a garbage collection)."""
        if self._release is not None:
            self._release()
        self._generation = -1


def open_runner(
    path: str, provider: str, options: Mapping[str, str] | None = None, **kwargs: Any
) -> OrtRunner | RemoteRunner:
    """A runner for a check's comparisons: in the worker process, except on a provider a hook added (it exists in
    this process only)."""
    from ..providers import registry

    if registry.definition(provider).create_session is not None:
        from .onnxruntime import OrtRunner

        return OrtRunner(path, provider, options, **kwargs)
    return RemoteRunner(path, provider, options, **kwargs)


def _rebuilt(kind: str, message: str, unavailable: str | None) -> BaseException:
    """The child's exception, as this process would have raised it."""
    from .onnxruntime import ProviderUnavailable, require

    if unavailable is not None:
        from ..providers.registry import Unavailable

        return ProviderUnavailable(Unavailable(unavailable, message))
    if kind in ("OnnxParityError", "OnnxParityUsageError"):
        return OnnxParityError(message)
    # ONNX Runtime's own errors (Fail, InvalidArgument ...) keep their type: messages name it
    found = getattr(require().capi.onnxruntime_pybind11_state, kind, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found(message)
    return RuntimeError(f"{kind}: {message}")


def open_runners(
    path: str, provider: str, options: Any, feed_names: Mapping[str, str], reference: str
) -> tuple[OrtRunner | RemoteRunner, Deferred | None]:
    """The target runner (first run profiled for placement) and, for a provider other than CPU whose reference is
    not ONNX Runtime's CPU provider, a CPU runner to compare with, opened on first use (the CPU item may serve all).
    Both run in the worker process."""
    target = open_runner(
        path, provider, options.provider_options.get(provider), profile=provider != "cpu", feed_names=feed_names
    )
    if provider == "cpu" or reference == target.name:
        return target, None
    return target, Deferred("onnxruntime-cpu", lambda: open_runner(path, "cpu", feed_names=feed_names))
