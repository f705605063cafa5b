"""Cortex-M layer kernels under qemu-system-arm vs the NumPy reference, bit for bit.

Hypothesis draws batches of layers (conv2d with groups, depthwise, dense; 1..8-bit weights in 8/16/32-bit words;
strides, padding, dilation; integer or float epilogues); each batch is one firmware (one build, one QEMU boot).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tvm_mp.errors import PlanError
from tvm_mp.mcu import Dequantize, McuLayer, Requantize, run_layers
from tvm_mp.mcu.packing import WORD_BITS_CHOICES
from tvm_mp.quantize import scheme
from tvm_mp.workload import ConvParams


def random_weights(rng, shape, bits):
    lo, hi = scheme.weight_qrange(bits)
    w = rng.integers(lo, hi + 1, shape)
    return np.where(w >= 0, 1, -1) if bits == 1 else w


@st.composite
def layer_cases(draw):
    """``(layer without a name, input codes)``; the shapes and bit-widths are drawn, the values seeded."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    op = draw(st.sampled_from(["conv2d", "depthwise", "dense"]))
    w_bits = draw(st.integers(1, 8))
    word_bits = draw(st.sampled_from(WORD_BITS_CHOICES))
    a_bits = draw(st.integers(1, 8))
    qmax = (1 << a_bits) - 1
    zp = draw(st.integers(0, qmax))
    n = draw(st.integers(1, 2))
    if op == "dense":
        k, oc = draw(st.integers(1, 80)), draw(st.integers(1, 12))
        in_shape, w_shape, params = (n, k), (oc, k), None
    else:
        groups = draw(st.integers(1, 6)) if op == "depthwise" else draw(st.integers(1, 3))
        cg = 1 if op == "depthwise" else draw(st.integers(1, 4))
        kg = 1 if op == "depthwise" else draw(st.integers(1, 4))
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        params = ConvParams((draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                            tuple(draw(st.integers(0, 2)) for _ in range(4)),
                            (draw(st.integers(1, 2)), draw(st.integers(1, 2))), groups)
        h = draw(st.integers(max(1, params.dilation[0] * (kh - 1) + 1 - params.padding[0] - params.padding[2]), 9))
        w = draw(st.integers(max(1, params.dilation[1] * (kw - 1) + 1 - params.padding[1] - params.padding[3]), 9))
        in_shape, w_shape = (n, groups * cg, h, w), (groups * kg, cg, kh, kw)
    oc = w_shape[0]
    w_q = random_weights(rng, w_shape, w_bits)
    codes = rng.integers(0, qmax + 1, in_shape).astype(np.uint8)
    corr = rng.integers(-(2**20), 2**20, oc)
    if draw(st.booleans()):
        out_bits = draw(st.integers(2, 8))
        out_max = (1 << out_bits) - 1
        lo, hi = (draw(st.integers(0, out_max // 3)), draw(st.integers(2 * out_max // 3, out_max))) if draw(
            st.booleans()) else (0, out_max)
        # scale so that the outputs spread over the code range (not all clipped): rounding is then visible
        def acc_range(bias):
            probe = McuLayer("probe", in_shape, w_q, w_bits, zp, bias, Dequantize(np.ones(oc, np.float32)), params)
            return np.abs(probe.reference(codes)).reshape(n, oc, -1).max(axis=(0, 2)).astype(np.int64) + 1
        corr = rng.integers(-acc_range(np.zeros(oc)), acc_range(np.zeros(oc)))
        real = (out_max / 2) / acc_range(corr) * rng.uniform(0.3, 1.5, oc)
        mult, shift = scheme.requant_multiplier(real)
        epilogue = Requantize(mult, shift, draw(st.integers(out_max // 3, 2 * out_max // 3)), lo, hi)
    else:
        lo = draw(st.one_of(st.none(), st.floats(-50, 0, width=32)))
        hi = draw(st.one_of(st.none(), st.floats(0, 50, width=32)))
        epilogue = Dequantize((10.0 ** rng.uniform(-4, 0, oc)).astype(np.float32), lo, hi)
    return dict(input_shape=in_shape, w_q=w_q, w_bits=w_bits, zero_point=zp, bias_corr=corr, epilogue=epilogue,
                params=params, word_bits=word_bits), codes


def named(cases):
    return [(McuLayer(f"case_{i}", **spec), codes) for i, (spec, codes) in enumerate(cases)]


@pytest.mark.external
@settings(max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: ~1 s a build
@given(st.lists(layer_cases(), min_size=8, max_size=14))
def test_kernels_match_reference_bit_for_bit(tmp_path_factory, cases):
    layers = named(cases)
    result = run_layers(layers, workdir=tmp_path_factory.mktemp("fw"))
    assert result.ok, result.failures()
    # the drawn scales leave most codes unclipped, so an error in the rounding of the requantization would show
    inside = [(out > layer.epilogue.lo) & (out < layer.epilogue.hi)
              for (layer, _), out in zip(layers, result.outputs) if layer.integer_output]
    if inside:
        assert np.mean(np.concatenate([v.reshape(-1) for v in inside])) > 0.25
    assert result.run.exit_status == 0
    assert len(result.run.checks) == len(cases)


def fixed_cases():
    rng = np.random.default_rng(7)
    cases = []
    for bits in range(1, 9):
        w = random_weights(rng, (6, 3, 3, 3), bits)
        spec = dict(input_shape=(1, 3, 6, 5), w_q=w, w_bits=bits, zero_point=3,
                    bias_corr=rng.integers(-1000, 1000, 6),
                    epilogue=Dequantize(rng.uniform(0.01, 1, 6).astype(np.float32), -2.5, None),
                    params=ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1))
        cases.append((spec, rng.integers(0, 256, (1, 3, 6, 5)).astype(np.uint8)))
    return named(cases)


@pytest.mark.external
def test_float_epilogue_on_cortex_m4_fpu(tmp_path):
    result = run_layers(fixed_cases(), target="cortex-m4", workdir=tmp_path)
    assert result.ok, result.failures()


@pytest.mark.external
def test_a_wrong_expectation_is_reported(tmp_path):
    cases = fixed_cases()[:3]
    layer, codes = cases[1]
    wrong = layer.reference(codes).copy()
    wrong.reshape(-1)[5] = np.nextafter(wrong.reshape(-1)[5], np.float32(np.inf))  # one ulp off
    result = run_layers(cases, workdir=tmp_path, expected={layer.name: wrong})
    assert not result.ok
    assert result.run.exit_status == 1
    checks = result.run.checks
    assert checks["case_0"].ok and checks["case_2"].ok
    assert not checks["case_1"].ok and checks["case_1"].mismatches == 1 and checks["case_1"].first_index == 5
    assert result.failures() and result.failures()[0].startswith("case_1")


def test_layer_validation_errors_are_one_line():
    w = np.ones((4, 2, 3, 3), dtype=np.int8)
    base = dict(input_shape=(1, 4, 5, 5), w_q=w, w_bits=2, zero_point=0, bias_corr=np.zeros(4, np.int32),
                epilogue=Dequantize(np.ones(4, np.float32)), params=ConvParams((1, 1), (0, 0, 0, 0), (1, 1), 2))
    McuLayer("ok", **base)
    for change, match in [(dict(w_q=w * 3), "range"), (dict(input_shape=(1, 3, 5, 5)), "do not fit"),
                          (dict(bias_corr=np.zeros(3)), "channels"), (dict(zero_point=300), "zero point")]:
        with pytest.raises(PlanError, match=match) as err:
            McuLayer("bad", **{**base, **change})
        assert "\n" not in str(err.value)
    with pytest.raises(PlanError, match="C identifier"):
        McuLayer("bad name", **base)
