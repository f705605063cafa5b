"""A small fp32 network built in Relax directly, so every pass sees conv, depthwise conv, dense, integer edges
(conv -> relu -> maxpool -> conv; conv -> relu -> reshape -> dense) and float edges (a residual add, fan-out):

conv2d_0 -> relu -> maxpool -> conv2d_1 (depthwise) -> clip(0, 6) -> conv2d_2 (1x1) -> add(., clip output)
-> conv2d_3 (1x1, stride 2) -> relu -> reshape -> dense_0
"""

import pytest
import tvm
from tvm import relax

from tests._nets import residual_net


def build_net(seed: int = 0) -> tvm.IRModule:
    return residual_net(seed, last_channels=4)


@pytest.fixture(scope="module")
def net(residual):
    return residual


@pytest.fixture(scope="module")
def calib(residual_calib):
    return residual_calib


def op_counts(func) -> dict:
    counts = {}
    for block in func.body.blocks:
        for b in block.bindings:
            v = b.value
            if isinstance(v, relax.Call):
                key = v.op.name if isinstance(v.op, tvm.ir.Op) else f"call:{v.op.name_hint}"
                if key == "relax.call_tir":
                    key = f"call_tir:{v.args[0].name_hint}"
                counts[key] = counts.get(key, 0) + 1
    return counts
