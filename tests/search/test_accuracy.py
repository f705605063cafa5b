import warnings

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp import Precision, PrecisionPlan
from tvm_mp.errors import Error, InputShapeError, PlanError
from tvm_mp.passes.pipeline import annotate_phase, quantize_phase
from tvm_mp.quantize.interpreter import Interpreter
from tvm_mp.search.accuracy import PROXY_METRICS, Scorer, fidelity, noise_ratio, plan_key

NAMES = ["conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "dense_0"]
precisions = st.builds(Precision, st.integers(1, 8), st.integers(1, 8),
                       st.sampled_from(["auto", "bitserial", "packed"]))


def reference(net, scorer, plan, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = tvm.transform.Sequential(annotate_phase(plan, scorer.ranges) + quantize_phase(scorer.ranges))(net)
    return Interpreter(quantized, quantized=True).run([x])


@settings(max_examples=8)
@given(st.lists(precisions, min_size=5, max_size=5))
def test_fast_reference_equals_the_passes_and_interpreter_exactly(net, scorer, calib, precs):
    plan = PrecisionPlan(dict(zip(NAMES, precs)))
    x = calib[0]
    expected = reference(net, scorer, plan, x)
    first = scorer.model(plan).run(x)
    again = scorer.model(plan).run(x)  # served from the activation cache
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)


def test_partial_plan_keeps_fp32_layers(net, scorer, calib):
    plan = PrecisionPlan({"conv2d_1": Precision(3, 4), "dense_0": Precision(2, 8)})
    x = calib[1]
    np.testing.assert_allclose(scorer.model(plan).run(x), reference(net, scorer, plan, x), rtol=1e-5, atol=1e-5)
    fp32 = Interpreter(net).run([x])
    np.testing.assert_allclose(scorer.model(PrecisionPlan({})).run(x), fp32, rtol=1e-5, atol=1e-5)


def test_changing_one_layer_recomputes_only_what_depends_on_it(net, calib):
    sc = Scorer(net, calib)
    base = PrecisionPlan({n: Precision(4, 4) for n in NAMES})
    sc.model(base).run(calib[0])
    calls = []
    interp = sc.evaluator._structure(frozenset(NAMES)).interp
    original = interp._quantized_layer
    interp._quantized_layer = lambda var, call, *a: calls.append(call.op.name_hint) or original(var, call, *a)
    last = PrecisionPlan({**dict(base.items()), "dense_0": Precision(2, 2)})
    sc.model(last).run(calib[0])
    # conv2d_3 requantizes straight into dense_0's input codes, so it depends on dense_0's precision too
    assert calls == ["tvm_mp_conv2d_3", "tvm_mp_dense_0"]


def test_scores_are_memoized_and_accuracy_fn_sees_a_runnable_model(net, calib):
    seen = []

    def accuracy_fn(model):
        seen.append(model.plan)
        return float(model.run(calib[0]).argmax(axis=1).mean())

    sc = Scorer(net, calib, accuracy_fn=accuracy_fn)
    plan = PrecisionPlan({n: Precision(8, 8) for n in NAMES})
    assert sc.score(plan) == sc.score(PrecisionPlan({n: Precision(8, 8, "packed") for n in NAMES}))
    assert len(seen) == 1 and sc.evaluations == 1 and sc.name == "accuracy_fn"
    with pytest.raises(Error, match="finite"):
        Scorer(net, calib, accuracy_fn=lambda m: float("nan")).score(plan)


def test_proxy_metrics_order_plans_by_fidelity(scorer):
    hi = PrecisionPlan({n: Precision(8, 8) for n in NAMES})
    lo = PrecisionPlan({n: Precision(1, 1) for n in NAMES})
    assert scorer.score(hi) >= scorer.score(lo)
    assert scorer.noise(hi) < scorer.noise(lo)
    for metric in PROXY_METRICS:
        x = np.random.default_rng(0).normal(size=(16, 5))
        noisy = x + np.random.default_rng(1).normal(0, 0.5, x.shape)
        assert fidelity(metric, x, x) > fidelity(metric, noisy, x)
    assert noise_ratio(np.ones(3), np.ones(3)) == 0.0
    assert plan_key(hi) == plan_key(PrecisionPlan({n: Precision(8, 8, "packed") for n in NAMES}))


def test_errors(net, scorer, calib):
    with pytest.raises(InputShapeError, match="expected"):
        scorer.model(PrecisionPlan({})).run(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(PlanError, match="unknown layer"):
        scorer.model(PrecisionPlan({"conv9": Precision(4, 4)})).run(calib[0])
    with pytest.raises(PlanError, match="metric"):
        Scorer(net, calib, metric="top5")


# ---- number formats: float-format and clustered layers, bit-exact with the interpreter ----------------------------
format_precisions = st.one_of(
    precisions,
    st.sampled_from([Precision.fp16(), Precision.bf16(), Precision.fp8_e4m3(), Precision.fp8_e5m2(),
                     Precision.float(3, 4)]),
    st.builds(Precision.clustered, st.integers(2, 64), st.integers(1, 8)))


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@settings(max_examples=10, deadline=None)
@given(st.lists(format_precisions, min_size=5, max_size=5))
def test_mixed_format_plans_equal_the_passes_and_interpreter_bit_for_bit(net, scorer, calib, precs):
    plan = PrecisionPlan(dict(zip(NAMES, precs)))
    x = calib[0]
    expected = reference(net, scorer, plan, x)
    assert _same_bits(scorer.model(plan).run(x), expected)
    assert _same_bits(scorer.model(plan).run(x), expected)  # from the cache


def test_float_layers_change_the_graph_structure_and_the_cache_follows(net, calib):
    sc = Scorer(net, calib)
    ints = PrecisionPlan({n: Precision(4, 4) for n in NAMES})
    mid = PrecisionPlan({**dict(ints.items()), "conv2d_1": Precision.fp16()})
    for plan in (ints, mid, ints, mid):
        assert _same_bits(sc.model(plan).run(calib[0]), reference(net, sc, plan, calib[0]))
    assert len(sc.evaluator._structures) == 2
    epi = sc.evaluator.epilogues(NAMES, floats=["conv2d_1"])
    assert epi["conv2d_0"] == "float" and epi["conv2d_1"] == "float"  # edges touching a float layer are float
    assert sc.evaluator.epilogues(NAMES)["conv2d_0"] == "requant"


@pytest.fixture(scope="module")
def digits():
    import tvm_mp
    from tvm_mp.datasets import calibration_batches, load_digits_split
    from tvm_mp.models import digits_cnn_path

    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    return mod, calibration_batches(4, 32, seed=0), load_digits_split().x_test[:96]


@pytest.mark.parametrize("precs", [
    ("fp16", "c16a8", "w4a4", "fp8_e4m3"),
    ("c8a8", "bf16", "fp8_e5m2", "w8a8"),
    ("w2a4", "c32a8", "e3m4", "c4a8"),
], ids="-".join)
def test_digits_mixed_plans_equal_the_interpreter_bit_for_bit(digits, precs):
    mod, calib, x = digits
    sc = Scorer(mod, calib)
    plan = PrecisionPlan(dict(zip(["conv2d_0", "conv2d_1", "conv2d_2", "dense_0"], map(Precision.parse, precs))))
    assert _same_bits(sc.model(plan).run(x), reference(mod, sc, plan, x))
