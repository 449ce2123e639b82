"""Exceptions and the warning users see (``ParityMismatch``, which carries a report, is in ``report.parity``).
Standard library only."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


class OnnxParityError(Exception):
    """A parity check could not be carried out: the model, its inputs, the export or the ONNX file is at fault.

    The message names the problem and the fix. It fails the one test that called ``onnx_parity``.
    """


class OnnxParityUsageError(OnnxParityError, ValueError):
    """An option or argument given to the plugin is invalid."""


class OnnxParityWarning(UserWarning):
    """Something the user should know that does not fail the check (``--onnx-strict`` makes it fail)."""


class ModelRejected(Exception):
    """Raised by a framework runner when the user's model itself raised on an input (never for plugin errors).

    Such inputs lie outside what the model accepts: they are skipped and counted, not compared.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
