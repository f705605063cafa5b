"""Small fp32 networks built in Relax directly, shared by the pass, accelerator and compile tests."""

import numpy as np
import tvm
from tvm import relax

from tvm_mp import _tvm


def residual_net(seed: int = 0, last_channels: int = 4) -> tvm.IRModule:
    """Every layer kind with integer and float edges (a residual add, fan-out), input (1, 3, 10, 10)::

        conv2d_0 -> relu -> maxpool -> conv2d_1 (depthwise) -> clip(0, 6) -> conv2d_2 (1x1) -> add(., clip output)
        -> conv2d_3 (1x1, stride 2, ``last_channels``) -> relu -> reshape -> dense_0 (5 outputs)
    """
    rng = np.random.default_rng(seed)
    const = lambda *shape: _tvm.const(rng.normal(0, 0.3, shape).astype(np.float32))  # noqa: E731
    x = relax.Var("x", relax.TensorType((1, 3, 10, 10), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            c0 = bb.emit(relax.op.nn.conv2d(x, const(8, 3, 3, 3), padding=(1, 1)))
            c0 = bb.emit(relax.op.add(c0, const(1, 8, 1, 1)))
            r0 = bb.emit(relax.op.nn.relu(c0))
            p0 = bb.emit(relax.op.nn.max_pool2d(r0, pool_size=(2, 2), strides=(2, 2)))
            c1 = bb.emit(relax.op.nn.conv2d(p0, const(8, 1, 3, 3), padding=(1, 1), groups=8))
            r1 = bb.emit(relax.op.clip(c1, 0.0, 6.0))
            c1b = bb.emit(relax.op.nn.conv2d(r1, const(8, 8, 1, 1)))
            res = bb.emit(relax.op.add(c1b, r1))  # float residual: r1 has two uses
            c2 = bb.emit(relax.op.nn.conv2d(res, const(last_channels, 8, 1, 1), strides=(2, 2)))
            r2 = bb.emit(relax.op.nn.relu(c2))
            flat = bb.emit(relax.op.reshape(r2, (1, last_channels * 3 * 3)))
            d0 = bb.emit(relax.op.matmul(flat, const(last_channels * 9, 5)))
            out = bb.emit_output(relax.op.add(d0, const(1, 5)))
        bb.emit_func_output(out)
    return bb.get()
