"""Fixtures for the search tests: a small Relax network (built directly, no ONNX) with a conv, a depthwise conv, a
residual add (a float edge and fan-out), a strided 1x1 conv and a dense layer, plus calibration and score data."""

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_mp import Budget, Precision, _tvm, list_layers


def small_net(seed: int = 0, softmax: bool = False) -> tvm.IRModule:
    """The network; ``softmax`` appends a softmax over the 5 outputs and a reshape (a classifier's ending)."""
    rng = np.random.default_rng(seed)

    def weight(*shape):
        return _tvm.const(rng.normal(0.0, 0.4, shape).astype(np.float32))

    x = relax.Var("x", relax.TensorType((1, 2, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.nn.conv2d(x, weight(6, 2, 3, 3), padding=(1, 1)))
            a = bb.emit(relax.op.add(a, weight(1, 6, 1, 1)))
            a = bb.emit(relax.op.nn.relu(a))
            b = bb.emit(relax.op.nn.conv2d(a, weight(6, 1, 3, 3), padding=(1, 1), groups=6))
            b = bb.emit(relax.op.clip(b, 0.0, 6.0))
            c = bb.emit(relax.op.nn.conv2d(b, weight(6, 6, 1, 1)))
            c = bb.emit(relax.op.add(c, b))
            d = bb.emit(relax.op.nn.conv2d(c, weight(4, 6, 1, 1), strides=(2, 2)))
            d = bb.emit(relax.op.nn.relu(d))
            flat = bb.emit(relax.op.reshape(d, (1, 64)))
            out = bb.emit(relax.op.matmul(flat, weight(64, 5)))
            if softmax:
                out = bb.emit(relax.op.add(out, weight(1, 5)))
                out = bb.emit(relax.op.nn.softmax(out, axis=-1))
                out = bb.emit_output(relax.op.reshape(out, (1, 5)))
            else:
                out = bb.emit_output(relax.op.add(out, weight(1, 5)))
        bb.emit_func_output(out)
    return bb.get()


@pytest.fixture(scope="session")
def net():
    return small_net()


@pytest.fixture(scope="session")
def layers(net):
    return list_layers(net)


@pytest.fixture(scope="session")
def calib():
    rng = np.random.default_rng(1)
    return [rng.normal(0.0, 1.0, (8, 2, 8, 8)).astype(np.float32) for _ in range(2)]


@pytest.fixture(scope="session")
def scorer(net, calib):
    from tvm_mp.search.accuracy import Scorer

    return Scorer(net, calib)


@pytest.fixture(scope="session")
def additive(layers):
    """Every layer with the 90 default options, analytical costs, a noise-like table falling with more bits."""
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.space import SearchSpace

    space = SearchSpace.build(layers)
    costs = CostTable.from_model(space)
    rng = np.random.default_rng(3)
    w = np.array([[o.w_bits for o in opts] for opts in space.options], dtype=float)
    a = np.array([[o.a_bits for o in opts] for opts in space.options], dtype=float)
    table = rng.uniform(0.5, 2.0, (space.n_layers, 1)) * (4.0**-w + 4.0**-a)
    lo = costs.minimum()["energy_uj"]
    hi = costs.totals(space.uniform_index(Precision(8, 8)))["energy_uj"]
    return space, costs, table, Budget(energy_uj=lo + 0.4 * (hi - lo))
