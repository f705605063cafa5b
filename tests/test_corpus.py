"""Real pretrained CNNs from PyPI (tvm_mp/testing/corpus.py) compile under uniform w8a8 and equal their reference.

Each model loads at a small fixed input size, calibrates on a few rendered digit strings, compiles with every
conv / dense layer as an integer kernel and every other op in fp32 as TVM builds it. The compiled model equals its NumPy
reference (integer layers exact; the fp32 ops after the last integer layer -- sigmoid, softmax, layer norm -- to
float tolerance). Skipped when rapidocr-onnxruntime (the ``test`` extra) is not installed.
"""

import time
import warnings

import numpy as np
import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.quantize.interpreter import Interpreter
from tvm_mp.testing import corpus

#: model -> (ops the reference computes through TVM, conv/dense layers)
EXPECTED = {
    "cls": ((), 54),
    "det": (("relax.image.resize2d", "relax.nn.conv2d_transpose"), 62),
    "rec": (("relax.power", "relax.strided_slice"), 47),
}


def load(name):
    try:
        return corpus.load(name)
    except corpus.CorpusUnavailable as err:
        pytest.skip(str(err))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cls", "det", "rec"])
def test_corpus_model_compiles_w8a8_and_equals_its_reference(name, record_property):
    start = time.perf_counter()
    mod, m = load(name)
    loaded = time.perf_counter()
    ops, n_layers = EXPECTED[name]
    layers = tvm_mp.list_layers(mod)
    assert len(layers) == n_layers
    shape = m.shapes["x"]
    images, _ = corpus.text_images(6, shape, seed=0, rotate=name == "cls")  # rendered digit strings
    calib = [images[:2], images[2:4]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(8, 8)), calibration=calib,
                            target="llvm")
    compiled = time.perf_counter()
    ours = [str(w.message) for w in caught if "run through TVM" in str(w.message)]
    assert ours == ([f"fp32 ops run through TVM in the reference: {', '.join(ops)}"] if ops else [])
    assert not cm.report.fp32_layers  # every conv / dense layer is an integer kernel
    x = images[4:]
    y, ref = cm.run(x), cm.reference(x)
    assert y.shape == ref.shape and np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    fp32 = Interpreter(mod).run([x])
    sqnr = 10 * np.log10(np.sum(fp32.astype(np.float64) ** 2) / max(np.sum((y - fp32).astype(np.float64) ** 2),
                                                                   1e-30))
    agree = float(np.mean(y.argmax(axis=-1) == fp32.argmax(axis=-1)))  # class / character per time step
    record_property("w8a8_vs_fp32_argmax_agreement", agree)
    record_property("load_s", round(loaded - start, 1))
    record_property("compile_s", round(compiled - loaded, 1))
    record_property("w8a8_vs_fp32_sqnr_db", round(float(sqnr), 1))
    print(f"{name}: {len(layers)} layers quantized, load {loaded - start:.1f} s, compile {compiled - loaded:.1f} s, "
          f"run+check {time.perf_counter() - compiled:.1f} s, exact {np.mean(y == ref):.3f}, "
          f"max |run - reference| {np.abs(y - ref).max():.2e}, w8a8 vs fp32 SQNR {sqnr:.1f} dB, "
          f"argmax agreement {agree:.3f}")
    # w8a8 stays close to the fp32 network (a broken scale or bias gives ~0 dB): the detector's probability map
    # by SQNR, the classifier's class and the recognizer's character per time step by agreement
    if name == "det":
        assert sqnr > 15.0
    else:
        assert agree >= 0.75


def test_missing_corpus_package_is_one_line(monkeypatch):
    monkeypatch.setattr(corpus, "PACKAGE", "no_such_package_tvm_mp")
    with pytest.raises(corpus.CorpusUnavailable) as err:
        corpus.model("cls")
    assert "pip install rapidocr-onnxruntime" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(tvm_mp.errors.Error, match="unknown corpus model"):
        corpus.model("resnet")


@pytest.mark.slow
def test_corpus_model_compiles_under_a_budget_and_equals_its_reference():
    """A budget compile of the 62-layer detector (energy, modelled: 0.85x of uniform w8a8) returns a mixed plan within
    the budget that runs and equals its reference, integer layers exact and the fp32 ops to float tolerance."""
    from tvm_mp import Budget
    from tvm_mp.canonical import canonicalize
    from tvm_mp.search.pareto import search_context

    mod, m = load("det")
    images, _ = corpus.text_images(6, m.shapes["x"], seed=0)
    calib = [images[:2], images[2:4]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = search_context(canonicalize(mod), calib)
        w8a8_uj = ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["energy_uj"]
        cm = tvm_mp.compile(mod, budget=Budget(energy_uj=0.85 * w8a8_uj), calibration=calib)
    assert cm.search.meets_budget() and cm.report.energy_uj <= 0.85 * w8a8_uj * (1 + 1e-6)
    assert len({str(p) for _, p in cm.plan.items()}) > 1  # mixed
    x = images[4:]
    y, ref = cm.run(x), cm.reference(x)
    assert y.shape == ref.shape and np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
