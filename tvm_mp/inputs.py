"""What a model accepts as input: the one check that ``run``, ``reference``, the search and calibration share.

A model's inputs are :class:`InputSpec` s (name, compiled shape, dtype: the parameters of its Relax ``main``).
:func:`check_inputs` turns what the user passed into one array per input, or raises one line that names the input
and says what to do. The rules (also in ``docs/inputs.md``):

- **How inputs are given**: by position, in ``main``'s parameter order (``run(x)``, ``run(x, idx)``), or by name
  (``run({"x": x, "idx": idx})`` or ``run(x=x, idx=idx)``), never both. Every input must be given; unknown names
  are refused. Array-likes (nested lists, tuples, NumPy scalars) are converted with ``np.asarray``.
- **Kinds of values**: real numbers only. Strings, bytes, Python objects, ``None``, datetimes and complex
  numbers are refused (a complex array is never silently cut to its real part).
- **Shapes**: the rank and every dimension but the first must be the compiled ones. The first dimension of the
  first input is the batch: any positive multiple of the compiled batch (a larger batch runs sample-block by
  sample-block, see :func:`tvm_mp.quantize.interpreter.sample_blocks`). Every other input whose compiled leading
  dimension is the compiled batch must have the same batch; inputs whose leading dimension is not the batch (an
  index vector, a scalar) must have exactly the compiled shape. Batch 0 is refused.
- **Dtypes**: a float input (float32 for ONNX models) takes bool, integer and float arrays, converted to its dtype
  (float64 is rounded to float32, as NumPy's ``astype`` does; ``run`` and ``reference`` see the same rounded
  values). An integer input (uint8 image data, int64 indices, ...) takes bool and integer arrays whose values fit
  its dtype, and runs with them as they are; float arrays are refused for it (no silent truncation of ``2.7``).
- **Non-finite values**: NaN or Inf in a float input is refused, naming the input and the first position. The
  quantized layers have no defined output for them (a NaN has no integer code), so ``run`` and ``reference``
  would not agree; clean the data first (e.g. ``np.nan_to_num``). Values beyond float32's range in a float64
  array become Inf when converted and are refused the same way.
- **Layout**: Fortran-ordered, strided or read-only arrays are accepted and give the same results as a
  C-contiguous copy (the arrays returned are C-contiguous).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import Error, InputShapeError, InputValueError

__all__ = ["InputSpec", "bind_inputs", "check_array", "check_inputs"]


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name in ``main``, its compiled shape and its NumPy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"InputSpec.name must be a non-empty string, got {self.name!r}")
        shape = tuple(self.shape)
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
            raise ValueError(f"InputSpec.shape must hold non-negative ints, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @property
    def is_float(self) -> bool:
        return np.dtype(self.dtype).kind == "f"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def as_specs(specs: Sequence) -> list[InputSpec]:
    """``specs`` as InputSpecs; plain shapes (the older form) become float32 inputs named ``input 0``, ..."""
    return [s if isinstance(s, InputSpec) else InputSpec(f"input {i}", tuple(s)) for i, s in enumerate(specs)]


def _names(specs: Sequence[InputSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs)


def bind_inputs(inputs: Sequence, named: Mapping[str, Any], specs: Sequence[InputSpec]) -> list:
    """The user's inputs in ``specs`` order: positional ``inputs``, one mapping ``{name: array}`` given as the only
    positional argument, or keyword arguments ``named``; never a mix."""
    specs = as_specs(specs)
    by_name = bool(named)
    if len(inputs) == 1 and isinstance(inputs[0], Mapping):
        if named:
            raise InputShapeError("give the inputs either as one dict or as keyword arguments, not both")
        named, inputs, by_name = inputs[0], (), True
    if by_name:
        if inputs:
            raise InputShapeError(f"give the inputs either by position or by name, not both; the model's inputs "
                                  f"are {_names(specs)}")
        bad = [k for k in named if not isinstance(k, str)]
        unknown = [k for k in named if k not in {s.name for s in specs}]
        if bad or unknown:
            raise InputShapeError(f"unknown input name(s) {', '.join(repr(k) for k in bad + unknown)}; the model's "
                                  f"inputs are {_names(specs)}")
        missing = [s.name for s in specs if s.name not in named]
        if missing:
            raise InputShapeError(f"input(s) {', '.join(repr(n) for n in missing)} missing; the model's inputs are "
                                  f"{_names(specs)}")
        return [named[s.name] for s in specs]
    if len(inputs) != len(specs):
        raise InputShapeError(f"the model takes {len(specs)} input(s) ({_names(specs)}), got {len(inputs)}")
    return list(inputs)


_REFUSED_KINDS = {"U": "strings", "S": "bytes", "O": "Python objects", "M": "datetimes", "m": "timedeltas",
                  "V": "structured records", "T": "strings"}


def _fmt_expected(spec: InputSpec, batched: bool) -> str:
    dims = [str(d) for d in spec.shape]
    if batched:
        dims[0] = "batch"
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_array(value: Any, spec: InputSpec, *, where: str = "", batch: int | None = None,
                batched: bool = True, value_error: type[Error] = InputValueError,
                shape_error: type[Error] = InputShapeError) -> np.ndarray:
    """One input as a C-contiguous array of ``spec.dtype`` (see the module docstring for the rules).

    ``batched``: the leading dimension is the batch (any positive size, or exactly ``batch`` when given); else the
    whole shape must be the compiled one. ``where`` prefixes the messages (e.g. ``"calibration batch 3, "``).
    """
    label = f"{where}input {spec.name!r}"
    if value is None or isinstance(value, (str, bytes, Mapping, set)):
        raise value_error(f"{label} must be a numeric array, got {type(value).__name__}; pass a NumPy array of "
                          f"shape {_fmt_expected(spec, batched)}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists, objects NumPy cannot convert
        raise value_error(f"{label} is not an array NumPy can read ({' '.join(str(err).split())}); pass a NumPy "
                          f"array of shape {_fmt_expected(spec, batched)}") from None
    kind = array.dtype.kind
    if kind in _REFUSED_KINDS:
        raise value_error(f"{label} holds {_REFUSED_KINDS[kind]} (dtype {array.dtype}); pass numbers "
                          f"({spec.dtype})")
    if kind == "c":
        raise value_error(f"{label} is complex ({array.dtype}); the model takes real {spec.dtype} values: pass "
                          "x.real (or np.abs(x)) if that is what you mean")
    expected = _fmt_expected(spec, batched)
    if array.ndim != len(spec.shape):
        raise shape_error(f"{label} has shape {array.shape} (rank {array.ndim}); expected {expected}")
    if batched:
        if tuple(array.shape[1:]) != spec.shape[1:]:
            raise shape_error(f"{label} has shape {array.shape}; expected {expected}")
        if array.shape[0] == 0:
            raise shape_error(f"{label} has batch 0 (shape {array.shape}); give at least one sample, shape "
                              f"{expected}")
        if batch is not None and array.shape[0] != batch:
            raise shape_error(f"{label} has batch {array.shape[0]} but the first input has batch {batch}; give "
                              "every batched input the same batch")
    elif array.shape != spec.shape:
        raise shape_error(f"{label} has shape {array.shape}; expected exactly {expected} (its first dimension is "
                          "not the batch)")
    target = np.dtype(spec.dtype)
    if target.kind == "f":
        if kind not in "biuf":
            raise value_error(f"{label} has dtype {array.dtype}; pass real numbers")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to Inf is reported below, in one line
            converted = array.astype(target, copy=False)
        finite = np.isfinite(converted)
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            what = "NaN" if np.isnan(converted[first]) else "Inf"
            count = int(np.size(finite) - np.count_nonzero(finite))
            beyond = " (after conversion to float32: values beyond its range become Inf)" \
                if what == "Inf" and kind == "f" and np.isfinite(array[first]) else ""
            raise value_error(f"{label} holds {what}{beyond} at index {first} ({count} non-finite value(s)); "
                              "quantized layers have no output for non-finite values: replace them first "
                              "(e.g. np.nan_to_num)")
        return np.ascontiguousarray(converted)
    if target.kind in "iub":
        if kind == "f":
            raise value_error(f"{label} is {spec.dtype} but got float values ({array.dtype}); pass integers, e.g. "
                              f"x.astype(np.{spec.dtype}) after rounding as you intend")
        if kind not in "biu":
            raise value_error(f"{label} has dtype {array.dtype}; pass {spec.dtype} values")
        if array.size and kind != "b":
            lo, hi = (0, 1) if target.kind == "b" else (int(np.iinfo(target).min), int(np.iinfo(target).max))
            amin, amax = int(array.min()), int(array.max())
            if amin < lo or amax > hi:
                bad = amin if amin < lo else amax
                raise value_error(f"{label} is {spec.dtype} but holds {bad}, outside its range [{lo}, {hi}]; pass "
                                  f"values the model's input type can hold")
        return np.ascontiguousarray(array.astype(target, copy=False))
    raise value_error(f"{label} has dtype {spec.dtype}, which tvm-mp cannot feed; re-export the model with float32 "
                      "or integer inputs")


def check_inputs(inputs: Sequence, specs: Sequence, *, multiple: bool = True, where: str = "",
                 value_error: type[Error] = InputValueError,
                 shape_error: type[Error] = InputShapeError) -> list[np.ndarray]:
    """Every input (already in ``specs`` order, see :func:`bind_inputs`) checked and converted.

    The first input's leading dimension is the batch; ``multiple`` (``run``/``reference``) requires it to be a
    multiple of the compiled batch (calibration takes any batch).
    """
    specs = as_specs(specs)
    if len(inputs) != len(specs):
        raise shape_error(f"{where}the model takes {len(specs)} input(s) ({_names(specs)}), got {len(inputs)}")
    if not specs:
        return []
    first = specs[0]
    compiled_batch = first.shape[0] if first.shape else None
    arrays: list[np.ndarray] = []
    batch = None
    for spec, value in zip(specs, inputs):
        batched = compiled_batch is not None and bool(spec.shape) and spec.shape[0] == compiled_batch
        array = check_array(value, spec, where=where, batch=batch, batched=batched, value_error=value_error,
                            shape_error=shape_error)
        if spec is first and batched:
            batch = array.shape[0]
            if multiple and batch % compiled_batch:
                raise shape_error(f"{where}batch {batch} is not a multiple of the compiled batch {compiled_batch}; "
                                  f"give {compiled_batch}, {2 * compiled_batch}, ... samples")
        arrays.append(array)
    return arrays
