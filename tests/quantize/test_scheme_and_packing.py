"""The integer scheme and the weight storage formats, in NumPy (what the kernels are checked against)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tvm_mp.quantize import packing, scheme

BITS = st.integers(1, 8)


@given(BITS, st.integers(1, 6), st.integers(1, 100), st.integers(0, 2**31 - 1))
def test_bitplanes_and_dense_packing_round_trip(bits, oc, r, seed):
    rng = np.random.default_rng(seed)
    lo, hi = scheme.weight_qrange(bits)
    w = rng.integers(lo, hi + 1, (oc, r))
    if bits == 1:
        w = np.where(w >= 0, 1, -1)
    planes = packing.weight_bitplanes(w, bits)
    assert planes.shape == (oc, bits, -(-r // 32)) and planes.dtype == np.uint32
    np.testing.assert_array_equal(packing.unpack_bitplanes(planes, bits, r), w)
    dense = packing.pack_dense(w, bits)
    cw = packing.container_bits(bits)
    assert dense.shape == (oc, -(-r // (8 // cw))) and dense.dtype == np.uint8
    np.testing.assert_array_equal(packing.unpack_dense(dense, bits, r), w)


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 40)),
                  elements=st.floats(-4, 4, width=32)), BITS)
def test_weight_quantization_range_and_error(w, bits):
    w_q, scale = scheme.quantize_weights(w, bits)
    lo, hi = scheme.weight_qrange(bits)
    assert w_q.dtype == np.int8 and w_q.min() >= lo and w_q.max() <= hi
    assert (scale > 0).all()
    if bits == 1:
        assert set(np.unique(w_q)) <= {-1, 1}
    else:  # the chosen scale is never worse than plain max scaling
        qmax = hi
        smax = np.abs(w).max(axis=1) / qmax
        smax = np.where(smax > 0, smax, 1.0)
        err_max = ((np.clip(np.rint(w / smax[:, None]), -qmax, qmax) * smax[:, None] - w) ** 2).sum(axis=1)
        err = ((w_q * scale[:, None].astype(np.float64) - w) ** 2).sum(axis=1)
        assert (err <= err_max * (1 + 1e-3) + 1e-9).all()


@given(st.floats(-10, 0), st.floats(0, 10), BITS)
def test_activation_quantization_represents_zero_exactly(lo, hi, bits):
    act = scheme.ActQuant.from_range(lo, hi, bits, unsigned=lo >= 0)
    assert act.dequantize(act.quantize(np.zeros(3, np.float32)))[0] == 0.0
    assert 0 <= act.zero_point <= act.qmax
    x = np.linspace(lo, hi, 101, dtype=np.float32)
    q = act.quantize(x)
    assert q.min() >= 0 and q.max() <= act.qmax
    assert (np.diff(q.astype(int)) >= 0).all()  # monotone: what lets maxpool/ReLU run on codes


@given(hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(1e-9, 1e3)))
def test_requant_multiplier_precision(real):
    m, s = scheme.requant_multiplier(real)
    approx = m / np.exp2(s.astype(np.float64))
    np.testing.assert_allclose(approx, real, rtol=2e-9)


def test_requantize_rounds_half_up_and_clamps():
    acc = np.array([[5, 6, 7, -5, 1000]], dtype=np.int32)
    mult, shift = scheme.requant_multiplier(np.array([0.5]))
    out = scheme.requantize(acc, 0, np.repeat(mult, 1), np.repeat(shift, 1), 3, 0, 15)
    # 5*0.5=2.5 -> 3, 6*0.5=3, 7*0.5=3.5 -> 4, -5*0.5=-2.5 -> -2 (half up), 500 -> clamp
    np.testing.assert_array_equal(out, [[6, 6, 7, 1, 15]])


def test_bias_correction_folds_zero_point():
    w_q = np.array([[1, -1, 2], [0, 1, 1]], np.int8)
    act = scheme.ActQuant(0.5, 2, 4)
    corr = scheme.bias_correction(np.array([1.0, -0.5], np.float32), w_q, np.array([1.0, 0.5], np.float32), act)
    np.testing.assert_array_equal(corr, [2 - 2 * 2, -2 - 2 * 2])


def test_invalid_ranges():
    from tvm_mp.errors import CalibrationError

    with pytest.raises(CalibrationError):
        scheme.ActQuant.from_range(float("nan"), 1.0, 4)
    with pytest.raises(CalibrationError):
        scheme.ActQuant(0.0, 0, 4)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_gptq_rounding_lowers_output_error(bits):
    """With the inputs' second moment, error-feedback rounding beats round-to-nearest on the layer's output."""
    from tvm_mp.quantize.rounding import input_second_moment

    rng = np.random.default_rng(bits)
    mix = rng.normal(size=(24, 24))
    x = rng.normal(size=(2000, 24)) @ mix  # correlated inputs, as conv windows are
    w = rng.normal(size=(16, 24)).astype(np.float32)
    h = input_second_moment(x)
    rtn_q, rtn_s = scheme.quantize_weights(w, bits)
    gq, gs = scheme.quantize_weights(w, bits, h)
    np.testing.assert_array_equal(rtn_s, gs)  # same scales and integer range: only the rounding differs
    lo, hi = scheme.weight_qrange(bits)
    assert gq.min() >= lo and gq.max() <= hi
    err = lambda q, s: float(np.mean((x @ (w - q * s[:, None]).T) ** 2))  # noqa: E731
    assert err(gq, gs) < (0.9 if bits == 1 else 0.8) * err(rtn_q, rtn_s)
    again, _ = scheme.quantize_weights(w, bits, h)
    np.testing.assert_array_equal(again, gq)  # deterministic


def test_gptq_rejects_statistics_of_another_layer():
    from tvm_mp.errors import PlanError

    with pytest.raises(PlanError, match="recalibrate"):
        scheme.quantize_weights(np.ones((4, 9), np.float32), 2, np.eye(8)[None])
