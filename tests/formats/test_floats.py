"""Float formats: the NumPy rounding against ml_dtypes, its documented differences, storage round trips, and the TE
rounding / decoding against NumPy bit for bit."""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import te

from tvm_mp import Precision, _tvm
from tvm_mp.errors import PlanError
from tvm_mp.formats import computes as C
from tvm_mp.quantize import floats as F

ML = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
      "float8_e5m2": ml_dtypes.float8_e5m2}
PRESETS = [Precision.fp16(), Precision.bf16(), Precision.fp8_e4m3(), Precision.fp8_e5m2()]
CUSTOM = [F.FloatFormat(3, 4), F.FloatFormat(6, 9), F.FloatFormat(2, 0), F.FloatFormat(8, 11),
          F.FloatFormat(3, 2, True)]


def bits_of(x):
    return np.ascontiguousarray(x, np.float32).view(np.uint32)


def stress_values(seed: int, n: int = 100_000) -> np.ndarray:
    """Random float32 bit patterns (every exponent) plus values spread over 10^-45 .. 10^38 and exact ties."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(over="ignore"):
        spread = (rng.standard_normal(n) * 10.0 ** rng.uniform(-45, 38, n)).astype(np.float32)
    return np.concatenate([raw, spread])


def ml_round(x, dtype_name):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, np.float32).astype(ML[dtype_name]).astype(np.float32)


@pytest.mark.parametrize("prec", PRESETS, ids=str)
def test_rounding_equals_ml_dtypes_where_finite(prec):
    fmt = F.FloatFormat.of(prec)
    x = stress_values(1)
    ours = F.round_to_format(x, fmt)
    theirs = ml_round(x, fmt.ml_dtype)
    finite = np.isfinite(theirs)
    assert finite.sum() > 50_000
    np.testing.assert_array_equal(bits_of(ours[finite]), bits_of(theirs[finite]))
    # documented difference: where ml_dtypes gives Inf (or NaN for e4m3fn) from a finite or infinite input, we saturate
    over = ~finite & ~np.isnan(x)
    assert over.any()
    np.testing.assert_array_equal(np.abs(ours[over]), np.float32(fmt.max_value))
    np.testing.assert_array_equal(np.signbit(ours[over]), np.signbit(x[over]))


@pytest.mark.parametrize("prec", PRESETS, ids=str)
def test_every_representable_value_is_fixed_and_decodes_like_ml_dtypes(prec):
    fmt = F.FloatFormat.of(prec)
    patterns = np.arange(1 << fmt.total_bits, dtype=np.uint32)
    container = np.uint8 if fmt.total_bits <= 8 else np.uint16
    native = patterns.astype(container).view(ML[fmt.ml_dtype]).astype(np.float32)
    ours = F.decode(patterns, fmt)
    finite = np.isfinite(native)
    np.testing.assert_array_equal(bits_of(ours[finite]), bits_of(native[finite]))
    np.testing.assert_array_equal(bits_of(F.round_to_format(native[finite], fmt)), bits_of(native[finite]))
    np.testing.assert_array_equal(F.encode(native[finite], fmt), patterns[finite].astype(container))
    assert np.isnan(ours[np.isnan(native)]).all()


def test_documented_edge_cases():
    fp16 = F.FloatFormat.of(Precision.fp16())
    e4m3 = F.FloatFormat.of(Precision.fp8_e4m3())
    x = np.array([65519.0, 65520.0, 1e9, np.inf, -np.inf, np.nan, -0.0, 2.0**-25, 3 * 2.0**-26, 2.0**-24],
                 np.float32)
    y = F.round_to_format(x, fp16)
    # 65519 rounds to 65504 (max); 65520 is the tie that IEEE rounds to Inf: saturated; so are 1e9 and +-Inf
    np.testing.assert_array_equal(y[:5], np.float32([65504, 65504, 65504, 65504, -65504]))
    assert np.isnan(y[5]) and bits_of(y[5]) == bits_of(x[5])  # NaN bits unchanged
    assert bits_of(y[6]) == 0x80000000  # -0 keeps its sign
    # subnormals kept, ties to even: 2^-25 is half the smallest subnormal -> 0; 1.5 * 2^-25 -> 2^-24
    np.testing.assert_array_equal(y[7:], np.float32([0.0, 2.0**-24, 2.0**-24]))
    assert ml_round(np.float32([500.0]), "float8_e4m3fn")[0] != ml_round(np.float32([500.0]), "float8_e4m3fn")[0]
    np.testing.assert_array_equal(F.round_to_format(np.float32([464.0, 500.0, -1e30]), e4m3), [448, 448, -448])
    assert e4m3.max_value == 448.0 and fp16.max_value == 65504.0
    assert F.FloatFormat.of(Precision.fp8_e5m2()).max_value == 57344.0


@pytest.mark.parametrize("fmt", CUSTOM, ids=lambda f: f.name)
def test_custom_formats_round_trip_and_grid(fmt):
    patterns = np.arange(1 << min(fmt.total_bits, 16), dtype=np.uint32)
    if fmt.total_bits > 16:  # e8m11: a random sample of the 2^20 patterns
        patterns = np.random.default_rng(0).integers(0, 1 << fmt.total_bits, 50_000).astype(np.uint32)
    values = F.decode(patterns, fmt)
    ok = np.isfinite(values)
    np.testing.assert_array_equal(bits_of(F.round_to_format(values[ok], fmt)), bits_of(values[ok]))
    np.testing.assert_array_equal(F.encode(values[ok], fmt), patterns[ok].astype(fmt.container_dtype))
    if fmt.total_bits > 16:
        return  # the nearest-value check needs the whole grid
    # rounding picks the nearest grid value for random inputs
    grid = np.unique(np.abs(values[ok]))
    x = stress_values(2, 20_000)
    x = x[np.isfinite(x) & (np.abs(x) <= fmt.max_value)]
    r = np.abs(F.round_to_format(x, fmt)).astype(np.float64)
    err = np.abs(np.abs(x.astype(np.float64)) - r)
    pos = np.clip(np.searchsorted(grid, np.abs(x)), 1, len(grid) - 1)
    best = np.minimum(np.abs(grid[pos] - np.abs(x)), np.abs(grid[pos - 1] - np.abs(x)))
    np.testing.assert_array_equal(err, best)


@pytest.mark.parametrize("bad", [dict(exp_bits=1, man_bits=3), dict(exp_bits=9, man_bits=3),
                                 dict(exp_bits=5, man_bits=12), dict(exp_bits=8, man_bits=3, finite=True),
                                 dict(exp_bits=4, man_bits=0, finite=True)])
def test_invalid_formats_name_the_valid_choices(bad):
    with pytest.raises(PlanError, match="exp_bits|man_bits|finite"):
        F.FloatFormat(**bad)


def test_storage_dtypes():
    w = np.random.default_rng(0).standard_normal((4, 9)).astype(np.float32)
    for prec, dtype in [(Precision.fp16(), "float16"), (Precision.bf16(), "bfloat16"), (Precision.fp8_e4m3(), "uint8"),
                        (Precision.fp8_e5m2(), "uint8"), (Precision.float(3, 4), "uint8"),
                        (Precision.float(6, 9), "uint16"), (Precision.float(8, 11), "uint32")]:
        fmt = F.FloatFormat.of(prec)
        stored = F.storage(w, fmt)
        assert str(stored.dtype) == dtype, prec
        np.testing.assert_array_equal(F.from_storage(stored, fmt), F.round_to_format(w, fmt))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tvm_native_casts_are_exact_on_every_pattern(dtype):
    """The native storage dtypes are decoded by TVM's cast: it must be exact on all 65536 patterns."""
    patterns = np.arange(1 << 16, dtype=np.uint16).view(ML[dtype])
    s = te.placeholder((1 << 16,), dtype, "s")
    d = te.compute(s.shape, lambda i: s[i].astype("float32"), name="d")
    out = _run(te.create_prim_func([s, d]), patterns, np.zeros(1 << 16, np.float32))
    expected = patterns.astype(np.float32)
    same = (bits_of(out) == bits_of(expected)) | (np.isnan(out) & np.isnan(expected))
    assert same.all()


def _run(func, *arrays, target="llvm"):
    mod = tvm.compile(func, tvm.target.Target(target) if isinstance(target, dict) else target)
    args = [_tvm.to_device(a) for a in arrays]
    mod["main"](*args)
    return args[-1].numpy()


@functools.lru_cache(maxsize=None)
def te_rounder(fmt: F.FloatFormat):
    x = te.placeholder((te.var("n"),), "float32", "x")
    return tvm.compile(te.create_prim_func([x, C.round_to_format(x, fmt)]), "llvm")["main"]


@functools.lru_cache(maxsize=None)
def te_decoder(fmt: F.FloatFormat):
    p = te.placeholder((te.var("n"),), fmt.container_dtype, "p")
    return tvm.compile(te.create_prim_func([p, C.decode_weights(p, fmt)]), "llvm")["main"]


FORMATS = [F.FloatFormat.of(p) for p in PRESETS] + CUSTOM


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_te_rounding_and_decoding_equal_numpy_bit_for_bit(fmt):
    x = np.concatenate([stress_values(3, 50_000), np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0])])
    out = _tvm.to_device(np.zeros_like(x))
    te_rounder(fmt)(_tvm.to_device(x), out)
    np.testing.assert_array_equal(bits_of(out.numpy()), F.round_bits(bits_of(x), fmt))
    if fmt.native_dtype is None:
        patterns = F.encode(F.round_to_format(stress_values(4, 20_000), fmt), fmt)
        dec = _tvm.to_device(np.zeros(patterns.shape, np.float32))
        te_decoder(fmt)(_tvm.to_device(patterns), dec)
        np.testing.assert_array_equal(bits_of(dec.numpy()), bits_of(F.decode(patterns, fmt)))


@settings(max_examples=40)
@given(st.integers(2, 8), st.integers(0, 11), st.booleans(), st.integers(0, 2**31 - 1))
def test_any_format_rounds_idempotently_and_monotonically(e, m, finite, seed):
    if finite and (e > 7 or m < 1):
        return
    fmt = F.FloatFormat(e, m, finite)
    x = np.sort(stress_values(seed, 2_000))
    x = x[np.isfinite(x)]
    r = F.round_to_format(x, fmt)
    np.testing.assert_array_equal(bits_of(F.round_to_format(r, fmt)), bits_of(r))
    assert (np.diff(r.astype(np.float64)) >= 0).all()  # rounding is monotone
    assert np.abs(r).max() <= fmt.max_value
