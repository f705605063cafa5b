"""Cross-layer equalization: rescale channel ranges across consecutive convolutions, fp32 outputs unchanged.

For ``y = conv2(act(conv1(x) + b1))`` with ``act`` ReLU or nothing (positively homogeneous: ``act(x / s) =
act(x) / s`` for ``s > 0``), dividing output channel ``c`` of ``conv1`` (weights and bias) by ``s_c`` and
multiplying the input channel ``c`` of ``conv2`` by ``s_c`` computes the same function. Choosing ``s_c =
sqrt(r1_c / r2_c)`` (``r1_c``: the range of ``conv1``'s output channel ``c``, ``r2_c``: the range of ``conv2``'s
weights reading channel ``c``) gives both the same range ``sqrt(r1_c r2_c)``, so a channel that was tiny in one
layer is no longer crushed by the quantization grid the others set (depthwise -> pointwise pairs in
MobileNet-style networks are the classic case). Chains are equalized pair by pair, a few rounds.

A graph-level pre-step on the canonical module (:func:`tvm_mp.frontend.canonicalize`), before calibration: the
equalized module is an ordinary fp32 module that equals the original to float rounding.
Pairs are taken only where each intermediate value has one use, both convolutions have constant NCHW/OIHW weights
and the bias (if any) is a per-channel constant; dead channels (zero range on either side) keep scale 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..layers import dataflow_bindings, op_name, use_counts

#: Rounds over all pairs (a conv in the middle of a chain is in two pairs).
ROUNDS = 4
#: Largest factor one channel is scaled by (either way): keeps extreme ratios of near-dead channels finite.
MAX_SCALE = 2.0**10


@dataclass(frozen=True, eq=False)
class _Pair:
    conv1: relax.Call
    bias: relax.Call | None  # the add of conv1's bias constant
    bias_index: int
    conv2: relax.Call


def _nchw_const_conv(call) -> bool:
    if op_name(call) != "relax.nn.conv2d" or not _tvm.is_const(call.args[1]):
        return False
    a = call.attrs
    return str(a.data_layout) == "NCHW" and str(a.kernel_layout) == "OIHW" and str(a.out_layout) in ("NCHW", "")


def find_pairs(func: relax.Function) -> list[_Pair]:
    """Every ``conv -> [+ bias] -> [relu] -> conv`` chain of single-use values in ``func``."""
    value = {b.var: b.value for b in dataflow_bindings(func)}
    uses = use_counts(func)
    pairs = []
    for conv2 in value.values():
        if not _nchw_const_conv(conv2):
            continue
        x = conv2.args[0]

        def single(v):
            return isinstance(v, relax.Var) and v in value and uses.get(v, 0) == 1

        if single(x) and op_name(value[x]) == "relax.nn.relu":
            x = value[x].args[0]
        bias, index = None, -1
        if single(x) and op_name(value[x]) == "relax.add":
            add = value[x]
            for i in (1, 0):
                other = add.args[1 - i]
                if _tvm.is_const(add.args[i]) and single(other) and _nchw_const_conv(value[other]):
                    bias, index, x = add, i, other
                    break
            else:
                continue
        if not (single(x) and _nchw_const_conv(value[x])):
            continue
        conv1 = value[x]
        channels = _tvm.const_value(conv1.args[1]).shape[0]
        if bias is not None:
            b = _tvm.const_value(bias.args[index])
            if b.dtype != np.float32 or b.size != channels or (b.ndim >= 3 and b.shape[-3] != channels) or \
                    (b.ndim < 3 and b.size != 1):
                continue
        w2 = _tvm.const_value(conv2.args[1])
        if w2.shape[1] * int(conv2.attrs.groups) != channels:
            continue
        pairs.append(_Pair(conv1, bias, index, conv2))
    return pairs


def _in_range(w2: np.ndarray, groups: int) -> np.ndarray:
    """Per input channel, max |w| over the conv's weights reading it."""
    oc, cg = w2.shape[:2]
    per = oc // groups
    a = np.abs(w2).reshape(groups, per, cg, -1).max(axis=(1, 3))  # [G, cg]
    return a.reshape(-1)


def _scale_inputs(w2: np.ndarray, groups: int, s: np.ndarray) -> np.ndarray:
    oc, cg = w2.shape[:2]
    per = oc // groups
    out = w2.reshape(groups, per, cg, -1) * s.reshape(groups, 1, cg, 1)
    return out.reshape(w2.shape)


def equalize(mod: tvm.IRModule, rounds: int = ROUNDS) -> tuple[tvm.IRModule, int]:
    """``(equalized module, number of conv pairs equalized)`` (see module docstring). ``mod``: canonical."""
    func = mod["main"]
    pairs = find_pairs(func)
    if not pairs:
        return mod, 0
    weights: dict = {}  # call -> float64 weight / bias
    key = {}

    def k(call):
        for known in key:
            if known.same_as(call):
                return key[known]
        key[call] = len(key)
        return key[call]

    for p in pairs:
        for c in (p.conv1, p.conv2):
            weights.setdefault(k(c), _tvm.const_value(c.args[1]).astype(np.float64))
        if p.bias is not None:
            weights.setdefault(k(p.bias), _tvm.const_value(p.bias.args[p.bias_index]).astype(np.float64))
    for _ in range(rounds):
        for p in pairs:
            w1, w2 = weights[k(p.conv1)], weights[k(p.conv2)]
            groups = int(p.conv2.attrs.groups)
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = _in_range(w2, groups)
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            s = np.clip(s, 1.0 / MAX_SCALE, MAX_SCALE)
            weights[k(p.conv1)] = w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1))
            weights[k(p.conv2)] = _scale_inputs(w2, groups, s)
            if p.bias is not None:
                b = weights[k(p.bias)]
                weights[k(p.bias)] = (b.reshape(-1) / s).reshape(b.shape)
    calls = list(key.items())

    @relax.expr_functor.mutator
    class Replace(relax.PyExprMutator):
        def visit_call_(self, call):
            index = next((i for c, i in calls if c.same_as(call)), None)
            new = super().visit_call_(call)
            if index is None:
                return new
            args = list(new.args)
            pos = 1 if op_name(call) == "relax.nn.conv2d" else next(
                p.bias_index for p in pairs if p.bias is not None and p.bias.same_as(call))
            args[pos] = _tvm.const(weights[index].astype(np.float32))
            return relax.Call(new.op, args, new.attrs)

    out = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    out["main"] = Replace().visit_expr(func)
    return out, len(pairs)
