"""The closed vocabularies of tvm-mp, each defined once: a ``Literal`` type for annotations and a tuple for checks.

Every module that takes one of these words checks it with :func:`check` at construction (or at its public
boundary), so a typo is one clear line naming the choices, never a silent fall-through of a string comparison.
"""

from __future__ import annotations

from typing import Literal, get_args

from .errors import Error

#: Integer kernel kinds: bit-serial (AND + popcount on bit-planes) and bit-packed (integer multiply-accumulate).
KernelKind = Literal["bitserial", "packed"]
KERNEL_KINDS: tuple[str, ...] = get_args(KernelKind)

#: Number-format kinds: reduced-precision floats and clustered weights with product tables.
FormatKind = Literal["float", "clustered"]
FORMAT_KINDS: tuple[str, ...] = get_args(FormatKind)

#: What a :class:`~tvm_mp.precision.Precision` may ask for ("auto": the kernel kind chosen by the bit-widths).
PrecisionKind = Literal["auto", "bitserial", "packed", "float", "clustered"]
PRECISION_KINDS: tuple[str, ...] = get_args(PrecisionKind)

#: How activation ranges are calibrated (see :func:`tvm_mp.quantize.calibrate.calibrate`).
CalibrationMethod = Literal["minmax", "percentile", "mse"]
CALIBRATION_METHODS: tuple[str, ...] = get_args(CalibrationMethod)
#: The method every entry point uses unless told otherwise: per-bit-width clipping that minimizes quantization error.
DEFAULT_CALIBRATION_METHOD: CalibrationMethod = "mse"

#: Which expected output shift of a quantized layer calibration lets its bias correct (see
#: :mod:`tvm_mp.quantize.correction`): none, the weights' rounding only, or weights and input quantization.
BiasCorrection = Literal["off", "weights", "full"]
BIAS_CORRECTIONS: tuple[str, ...] = get_args(BiasCorrection)

#: How a layer's output leaves its kernel: raw int32 accumulators, dequantized float, or requantized into the
#: next layer's codes (an integer edge).
Epilogue = Literal["acc", "float", "requant"]
EPILOGUES: tuple[str, ...] = get_args(Epilogue)

#: Proxy scores of a plan when no ``accuracy_fn`` is given (see :func:`tvm_mp.search.accuracy.fidelity`).
ScoreMetric = Literal["agreement", "sqnr_db", "neg_kl"]
SCORE_METRICS: tuple[str, ...] = get_args(ScoreMetric)

#: The costs a budget limits and a cost table holds.
CostMetric = Literal["energy_uj", "latency_ms", "memory_kb"]
COST_METRICS: tuple[str, ...] = get_args(CostMetric)


def check(value: object, allowed: tuple[str, ...], what: str, error: type[Error] = Error) -> str:
    """``value`` if it is one of ``allowed``; else ``error`` with one line naming the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise error(f"unknown {what} {value!r}: use one of {', '.join(map(repr, allowed))}")
    return value
