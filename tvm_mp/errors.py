"""Errors a user can cause. Every one is a subclass of :class:`Error` and reads as one line that says what to fix."""

from __future__ import annotations


class Error(Exception):
    """Base class of every error tvm-mp raises for a mistake in its inputs."""


class ModelError(Error):
    """The model file or the graph in it cannot be used (missing, not ONNX, truncated, unsupported)."""


class InputShapeError(Error):
    """An input name or shape given by the user does not fit the model."""


class InputValueError(Error):
    """An input array's kind, dtype or values do not fit the model (strings, complex numbers, NaN/Inf, an integer
    outside the input's type, floats for an integer input)."""


class PlanError(Error):
    """A precision, plan or layer name is invalid."""


class CalibrationError(Error):
    """Calibration data is missing, has the wrong shape, or holds NaN/Inf."""


class UnsupportedError(Error):
    """An operation tvm-mp cannot compile in the requested form."""


class CompileError(Error):
    """TVM failed to build a module; the message names the layer or stage."""


class ToolchainError(Error):
    """A cross compiler or emulator is missing or failed; the message names the Debian package to install."""


class RPCError(Error):
    """A tracker or a device over TVM RPC is unreachable, refused, or did not answer within its deadline."""


_registered = False


def ensure_ffi_registration() -> None:
    """Let tvm-mp errors raised inside a TVM pass reach the caller as themselves, not as RuntimeError.

    TVM's FFI maps an error crossing C++ back to a Python class by name. Each tvm-mp pass calls this when it
    runs (not at import): it only adds our classes to that name -> class table, once.
    """
    global _registered
    if _registered:
        return
    from tvm_ffi.error import register_error

    for cls in (Error, ModelError, InputShapeError, InputValueError, PlanError, CalibrationError, UnsupportedError,
                CompileError, ToolchainError, RPCError):
        register_error(cls.__name__, cls)
    _registered = True
