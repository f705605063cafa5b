"""The bundled workloads are valid ONNX, run with a dynamic batch, are reproducible, and the digits CNN is accurate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tools import train_digits as td
from tvm_mp.datasets import load_digits_split
from tvm_mp.models import digits_cnn_info_path, digits_cnn_path
from tvm_mp.models.builders import BUILDERS

NUM_CLASSES = {"resnet8": 10, "ds_cnn": 12, "mobilenet_v1_025": 2, "fer_cnn": 7, "digits_cnn": 10}
#: The ImageNet-scale builders: (quantizable layers = Conv + Gemm, Add nodes); built once, checked by the cheap
#: tests at the end (their 3-47 MB of weights make the per-builder tests below too slow for CI).
IMAGENET = {"mobilenet_v2_10": (53, 10), "resnet18": (21, 8)}
SMALL = [name for name in BUILDERS if name not in IMAGENET]
RANDOM_BUILDERS = [name for name in SMALL if name != "digits_cnn"]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers plus the values of Constant nodes."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


@pytest.fixture(scope="module")
def models() -> dict[str, onnx.ModelProto]:
    return {name: BUILDERS[name].build(0) for name in SMALL}


def test_builders_table_matches_models(models):
    assert set(BUILDERS) == set(NUM_CLASSES) | set(IMAGENET)
    for name in SMALL:
        builder = BUILDERS[name]
        model = models[name]
        assert builder.name == name
        assert builder.input_shape[0] == 1
        inp = model.graph.input
        assert [i.name for i in inp] == [builder.input_name] == ["input"]
        dims = inp[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "N"  # dynamic batch
        assert tuple(d.dim_value for d in dims[1:]) == builder.input_shape[1:]
        assert [o.name for o in model.graph.output] == ["logits"]


@pytest.mark.parametrize("name", SMALL)
def test_model_is_valid_opset17_with_exporter_features(name, models):
    model = models[name]
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" in ops
    assert ops & {"Relu", "Clip"}


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("batch", [1, 3])
def test_model_runs_with_dynamic_batch(name, batch, models):
    builder = BUILDERS[name]
    x = np.random.default_rng(batch).random((batch, *builder.input_shape[1:]), dtype=np.float32)
    (logits,) = _session(models[name]).run(["logits"], {"input": x})
    assert logits.shape == (batch, NUM_CLASSES[name])
    assert np.isfinite(logits).all()
    assert np.abs(logits).max() < 1e3  # activations stay in a sane range through the depth


@pytest.mark.parametrize("name", SMALL)
def test_same_seed_gives_byte_identical_model(name, models):
    assert BUILDERS[name].build(0).SerializeToString() == models[name].SerializeToString()


@pytest.mark.parametrize("name", RANDOM_BUILDERS)
def test_different_seed_gives_different_weights(name, models):
    a, b = _weights(models[name]), _weights(BUILDERS[name].build(1))
    assert a.keys() == b.keys()
    assert any(v.size > 1 and not np.array_equal(v, b[k]) for k, v in a.items())
    conv_weights = [k for k in a if k.endswith("conv.weight")]
    assert conv_weights and all(not np.array_equal(a[k], b[k]) for k in conv_weights)


def test_digits_model_is_accurate_and_matches_its_record():
    split = load_digits_split()
    session = ort.InferenceSession(str(digits_cnn_path()), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": split.x_test})
    correct = int((logits.argmax(axis=1) == split.y_test).sum())
    accuracy = correct / len(split.y_test)
    assert accuracy >= 0.97
    record = json.loads(digits_cnn_info_path().read_text())
    assert record["test_total"] == len(split.y_test)
    assert record["test_correct"] == correct
    assert record["test_accuracy"] == accuracy


def test_digits_file_looks_like_a_real_export():
    path = digits_cnn_path()
    assert path.stat().st_size < 200_000
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("BatchNormalization") == 3
    assert ops.count("Conv") == 3 and ops.count("MaxPool") == 2 and ops.count("Gemm") == 1
    for op in ("Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape"):
        assert op in ops
    # at least one weight is a Constant node rather than an initializer
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    constants = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    assert gemm.input[1] in constants
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_short_training_is_deterministic_and_export_matches_numpy():
    split = load_digits_split()
    x, y = split.x_train[:256], split.y_train[:256]
    config = td.TrainConfig(epochs=1, seed=3)
    a = td.train(x, y, config)
    b = td.train(x, y, config)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], td.init_params(3)["conv1.weight"])  # it did train

    # the exported graph computes what the NumPy inference pass computes
    model = td.export_onnx(a)
    (logits,) = _session(model).run(["logits"], {"input": split.x_test[:20]})
    np.testing.assert_allclose(logits, td.forward_eval(a, split.x_test[:20]), rtol=1e-4, atol=1e-4)


def test_training_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    params = td.init_params(0)
    x, y = rng.random((4, 1, 8, 8)), np.array([1, 2, 3, 4])

    def loss(p):
        return td.softmax_cross_entropy(td.forward_train(p, x)[0], y)[0]

    logits, caches = td.forward_train(params, x)
    grads = td.backward(params, td.softmax_cross_entropy(logits, y)[1], caches)
    eps = 1e-6
    for name, grad in grads.items():
        idx = tuple(int(rng.integers(0, s)) for s in params[name].shape)
        plus = {k: v.copy() for k, v in params.items()}
        minus = {k: v.copy() for k, v in params.items()}
        plus[name][idx] += eps
        minus[name][idx] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert grad[idx] == pytest.approx(numeric, rel=1e-4, abs=1e-7), name


@pytest.fixture(scope="module")
def imagenet_models() -> dict[str, onnx.ModelProto]:
    return {name: BUILDERS[name].build(0) for name in IMAGENET}


@pytest.mark.parametrize("name", list(IMAGENET))
def test_imagenet_builder_layers_and_shapes(name, imagenet_models):
    """Layer and residual-add counts, the registry's input, the inferred output shape, a finite batch-1 run."""
    model = imagenet_models[name]
    builder = BUILDERS[name]
    assert builder.input_shape == (1, 3, 224, 224) and builder.input_name == "input"
    ops = [n.op_type for n in model.graph.node]
    assert (ops.count("Conv") + ops.count("Gemm"), ops.count("Add")) == IMAGENET[name]
    assert "BatchNormalization" in ops and {"Relu", "Clip"} & set(ops)
    inferred = onnx.shape_inference.infer_shapes(model)
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "N" and out[1].dim_value == 1000
    convs = {n.output[0]: n for n in model.graph.node if n.op_type == "Conv"}
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:])
              for v in inferred.graph.value_info if v.name in convs}
    assert shapes[next(iter(convs))] == (32, 112, 112) if name == "mobilenet_v2_10" else (64, 112, 112)
    assert (list(shapes.values())[-1][1:]) == (7, 7)  # total stride 32
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    (logits,) = _session(model).run(["logits"], {"input": x})
    assert logits.shape == (1, 1000) and np.isfinite(logits).all() and np.abs(logits).max() < 1e3


@pytest.mark.slow
@pytest.mark.parametrize("name", list(IMAGENET))
def test_imagenet_builder_imports_with_every_layer_quantizable(name, imagenet_models):
    """TVM imports it at batch 1 and tvm-mp finds every conv / dense layer (no compile: that takes minutes)."""
    import tvm_mp

    builder = BUILDERS[name]
    mod = tvm_mp.load_onnx(imagenet_models[name], shapes={builder.input_name: builder.input_shape})
    layers = tvm_mp.list_layers(mod)
    assert len(layers) == IMAGENET[name][0] and not tvm_mp.unquantizable_layers(mod)
    assert layers[0].input_shape == (1, 3, 224, 224) and layers[-1].op == "dense"
    assert sum(layer.macs for layer in layers) > (3e8 if name == "mobilenet_v2_10" else 1.8e9)
