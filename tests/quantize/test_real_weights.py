"""Post-training quantization on the weights trained networks have: dead output channels, tiny-range channels,
outlier channels, huge biases. Never an error; integer layers equal their NumPy reference exactly; biases survive."""

import numpy as np
import pytest
import tvm
from hypothesis import given
from hypothesis import strategies as st
from tvm import relax

import tvm_mp
from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.quantize import scheme

BIASES = [0.1, 0.3, 0.7, 0.2, 1e9, -2.0]


def odd_weights(rng, oc: int, cin: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights and bias with channel 1 dead (all zero), 2 of range 1e-30, 3 with one outlier (x1000),
    4 normal with a bias of 1e9, 5 of range 1e-12 with a negative bias."""
    w = rng.normal(0, 0.3, (oc, cin, k, k)).astype(np.float32)
    w[1] = 0.0
    w[2] *= np.float32(1e-30)
    w[3, 0, 0, 0] *= 1000.0
    w[5] *= np.float32(1e-12)
    bias = np.array(BIASES[:oc] + [0.05] * max(0, oc - len(BIASES)), np.float32)
    return w, bias


def odd_net(integer_edges: bool) -> tuple[tvm.IRModule, np.ndarray, np.ndarray]:
    """conv2d_0 (odd channels) -> [relu -> conv2d_1 (odd channels) -> relu -> reshape -> dense_0], input (1,3,6,6).

    ``integer_edges=False``: conv2d_0's output is the network output (a float epilogue: its values are checked
    against fp32)."""
    rng = np.random.default_rng(0)
    w0, b0 = odd_weights(rng, 6, 3, 3)
    x = relax.Var("x", relax.TensorType((1, 3, 6, 6), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            c0 = bb.emit(relax.op.nn.conv2d(x, _tvm.const(w0), padding=(1, 1)))
            c0 = bb.emit(relax.op.add(c0, _tvm.const(b0.reshape(1, -1, 1, 1))))
            if integer_edges:
                w1, b1 = odd_weights(rng, 6, 6, 1)
                b1[4] = -1e9  # cancels (part of) the channel that carries 1e9 into conv2d_1
                r0 = bb.emit(relax.op.nn.relu(c0))
                c1 = bb.emit(relax.op.nn.conv2d(r0, _tvm.const(w1)))
                c1 = bb.emit(relax.op.add(c1, _tvm.const(b1.reshape(1, -1, 1, 1))))
                r1 = bb.emit(relax.op.nn.relu(c1))
                flat = bb.emit(relax.op.reshape(r1, (1, 6 * 36)))
                wd = rng.normal(0, 0.1, (6 * 36, 4)).astype(np.float32)
                wd[:, 1] = 0.0  # a dead dense output
                d0 = bb.emit(relax.op.matmul(flat, _tvm.const(wd)))
                c0 = bb.emit(relax.op.add(d0, _tvm.const(np.array([[0.0, 5e8, -0.1, 0.2]], np.float32))))
            out = bb.emit_output(c0)
        bb.emit_func_output(out)
    return bb.get(), w0, b0


def calibration(n: int = 3):
    rng = np.random.default_rng(1)
    return [rng.uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("bits", [(8, 8), (4, 4)])
def test_odd_channels_keep_their_bias_on_a_float_output(bits):
    """A dead channel, channels of range 1e-30 / 1e-12, an outlier channel and a bias of 1e9 compile without an
    error; the compiled output equals the reference exactly and stays close to fp32 (each bias kept: saturating
    it would leave ~0 on channels 1, 2 and 5)."""
    mod, _, b0 = odd_net(integer_edges=False)
    plan = PrecisionPlan.uniform(mod, Precision(*bits))
    cm = tvm_mp.compile(mod, plan=plan, calibration=calibration(), target="llvm")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)
    y = cm.run(x)
    np.testing.assert_array_equal(y, cm.reference(x))
    fp32 = _tvm.run_relax(_tvm.build(mod, "llvm"), [x])
    for c in (1, 2, 5):  # the bias is the whole channel
        np.testing.assert_allclose(y[0, c], b0[c], rtol=1e-3)
    np.testing.assert_allclose(y[0, 4], fp32[0, 4], rtol=1e-6)  # 1e9 plus a few units
    scale = np.abs(fp32[0, [0, 3]]).max()
    assert np.abs(y[0, [0, 3]] - fp32[0, [0, 3]]).max() < (0.05 if bits == (8, 8) else 0.5) * scale


@pytest.mark.slow
@pytest.mark.parametrize("bits", [(8, 8), (2, 2), (1, 4)])
def test_odd_channels_on_integer_edges_equal_the_reference(bits):
    """The same channels in a chain of integer edges (requantization between conv2d_0, conv2d_1 and dense_0),
    one-bit weights included (their bias saturates): no error, and the compiled model equals its reference."""
    mod, _, _ = odd_net(integer_edges=True)
    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(*bits)), calibration=calibration(),
                        target="llvm")
    from tvm_mp.driver import epilogues

    assert epilogues(cm.quantized_module) == {"conv2d_0": "requant", "conv2d_1": "requant", "dense_0": "float"}
    x = np.random.default_rng(3).uniform(-1, 1, (4, 3, 6, 6)).astype(np.float32)
    y = cm.run(x)
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y, cm.reference(x))


CHANNEL = st.sampled_from(["normal", "dead", "tiny", "denormal", "outlier"])


@given(st.lists(st.tuples(CHANNEL, st.sampled_from([0.0, 1e-3, 0.5, -3.0, 1e6, -1e9, 3e12])), min_size=1,
                max_size=6),
       st.integers(1, 8), st.sampled_from([1e-30, 1e-8, 1.0 / 255, 0.5, 40.0]), st.integers(0, 2**31 - 1))
def test_fit_accumulator_makes_every_bias_fit(channels, bits, in_scale, seed):
    """For any mix of channels, bias and input scale: the bias correction fits int32 (never an error), the
    accumulator scale is a positive float32, fitting is idempotent, only widens live channels' scales, untouched
    channels keep their integers, and (2 bits or more, or dead channels) each bias is representable:
    |bias / (s_in s_w)| <= BIAS_LIMIT."""
    rng = np.random.default_rng(seed)
    r = 12
    w = rng.normal(0, 0.3, (len(channels), r))
    for k, (kind, _) in enumerate(channels):
        w[k] *= {"normal": 1.0, "dead": 0.0, "tiny": 1e-30, "denormal": 1e-40, "outlier": 1.0}[kind]
        if kind == "outlier":
            w[k, 0] = 300.0
    w = w.astype(np.float32)
    bias = np.array([b for _, b in channels], np.float32)
    act = scheme.ActQuant(in_scale, 3 if bits > 1 else 0, bits)
    w_q, w_s = scheme.quantize_weights(w, bits)
    fq, fs = scheme.fit_accumulator(w, w_q, w_s, bias, act.scale, bits)
    again = scheme.fit_accumulator(w, fq, fs, bias, act.scale, bits)
    np.testing.assert_array_equal(again[0], fq)
    np.testing.assert_array_equal(again[1], fs)
    dead = np.array([kind == "dead" for kind, _ in channels])
    assert fs.dtype == np.float32 and ((fs >= w_s) | dead).all()  # dead channels take the finest fitting scale
    kept = fs == w_s
    np.testing.assert_array_equal(fq[kept], w_q[kept])
    lo, hi = scheme.weight_qrange(bits)
    assert fq.min() >= lo and fq.max() <= hi
    out_scale = scheme.output_scale(fs, act)
    assert (out_scale > 0).all() and np.isfinite(out_scale).all()
    corr = scheme.bias_correction(bias, fq, fs, act)
    assert corr.dtype == np.int32
    term = np.abs(bias.astype(np.float64)) / (np.float64(act.scale) * fs.astype(np.float64))
    assert (term[dead | (bits >= 2)] <= scheme.BIAS_LIMIT).all()
    scheme.requant_multiplier(out_scale.astype(np.float64) / 1e-6)  # a tiny next-layer scale: no error either


def test_requant_multiplier_saturates_huge_ratios_exactly():
    """A ratio >= 2**30 (one accumulator unit spans more codes than exist) saturates every non-zero accumulator,
    exactly as the real-valued product clamps, instead of failing."""
    mult, shift = scheme.requant_multiplier(np.array([2.0**31, 5e12, 2.0**29]))
    assert (shift >= 1).all() and (mult < 2**31).all()
    acc = np.array([[-3, -1, 0, 1, 2]] * 3, dtype=np.int32).T  # [5, 3]: channel axis 1
    out = scheme.requantize(acc, 1, mult, shift, 100, 0, 255)
    np.testing.assert_array_equal(out[:, 0], [0, 0, 100, 255, 255])
    np.testing.assert_array_equal(out[:, 1], [0, 0, 100, 255, 255])
