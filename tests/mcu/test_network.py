"""Whole quantized networks on the emulated Cortex-M equal the NumPy reference of their plan, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.driver import quantize
from tvm_mp.errors import UnsupportedError
from tvm_mp.mcu import emit_network, run_network
from tvm_mp.models.builders import BUILDERS


def load(name):
    b = BUILDERS[name]
    return tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})


@pytest.fixture(scope="module")
def digits():
    return load("digits_cnn")


def random_inputs(shape, count, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for _ in range(count)]


@pytest.mark.external
@settings(max_examples=2, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: builds are slow
@given(bits=st.lists(st.tuples(st.integers(1, 8), st.integers(2, 8)), min_size=4, max_size=4))
def test_digits_cnn_mixed_plan_via_compile(digits, tmp_path_factory, bits):
    names = [layer.name for layer in tvm_mp.list_layers(digits)]
    plan = PrecisionPlan({n: Precision(w, a) for n, (w, a) in zip(names, bits)})
    model = tvm_mp.compile(digits, plan=plan, calibration=calibration_batches(2, 16))
    xs = [x[None] for x in load_digits_split().x_test[:3]]
    result = run_network(model, xs, workdir=tmp_path_factory.mktemp("digits"),
                         expected=[model.reference(x) for x in xs])
    assert result.ok, result.failures()
    net = result.network
    assert [s.kind for s in net.steps] == ["quantize", "conv2d", "conv2d", "max_pool2d", "conv2d", "max_pool2d",
                                           "dense"]
    assert [s.layer.integer_output for s in net.steps if s.layer is not None] == [True, True, True, False]
    assert net.weight_bytes == sum(layer.fmt.weight_bytes(layer.out_channels, layer.reduction)
                                   for layer in net.layers)


@pytest.mark.external
def test_ds_cnn_depthwise_avgpool_and_float_edges(tmp_path):
    mod = load("ds_cnn")
    names = [layer.name for layer in tvm_mp.list_layers(mod)]
    cycle = [(2, 8), (5, 6), (8, 8), (3, 4), (1, 8), (7, 5), (4, 8)]
    plan = PrecisionPlan({n: Precision(*cycle[i % len(cycle)]) for i, n in enumerate(names)})
    xs = random_inputs((1, 1, 49, 10), 2, 3)
    q = quantize(mod, plan, calibration=xs)
    result = run_network(q, xs, word_bits=16, workdir=tmp_path)
    assert result.ok, result.failures()
    kinds = [s.kind for s in result.network.steps]
    assert kinds.count("depthwise_conv2d") == 4 and "avg_pool2d" in kinds and kinds.count("quantize") == 2


@pytest.mark.external
def test_resnet8_residual_add_and_global_mean(tmp_path):
    mod = load("resnet8")
    plan = PrecisionPlan.uniform(mod, Precision(3, 8))
    xs = random_inputs((1, 3, 32, 32), 1, 4)
    result = run_network(quantize(mod, plan, calibration=xs, calibration_method="minmax"), xs, workdir=tmp_path,
                         timeout_s=120)
    assert result.ok, result.failures()
    kinds = {s.kind for s in result.network.steps}
    assert {"add", "mean"} <= kinds


def test_a_float_layer_is_refused(digits):
    names = [layer.name for layer in tvm_mp.list_layers(digits)]
    plan = PrecisionPlan({n: Precision(4, 8) for n in names[:-1]})  # dense_0 stays fp32
    with pytest.warns(UserWarning, match="stay fp32"):
        q = quantize(digits, plan, calibration=calibration_batches(1, 8))
    with pytest.raises(UnsupportedError, match="quantize every layer"):
        emit_network(q)


def test_arena_places_live_tensors_apart(digits):
    plan = PrecisionPlan.uniform(digits, Precision(2, 8))
    net = emit_network(quantize(digits, plan, calibration=calibration_batches(1, 8), calibration_method="minmax"))
    steps = net.steps
    live = {}
    for k, s in enumerate(steps):
        for tid in (*s.inputs, s.output):
            st_ = net.tensors[tid].storage
            if st_ == net.tensors[net.input_tid].storage:
                continue
            first, last = live.get(st_, (k, k))
            live[st_] = (min(first, k), max(last, k))
    size = {net.tensors[s.output].storage: net.tensors[s.output].nbytes for s in steps}
    items = sorted(live)
    for i, a in enumerate(items):
        assert net.offsets[a] + size[a] <= net.arena_bytes
        for b in items[i + 1:]:
            overlap_time = not (live[a][1] < live[b][0] or live[b][1] < live[a][0])
            overlap_mem = not (net.offsets[a] + size[a] <= net.offsets[b] or net.offsets[b] + size[b] <= net.offsets[a])
            assert not (overlap_time and overlap_mem), (a, b)
    assert net.arena_bytes < sum(size.values())  # storage is reused
