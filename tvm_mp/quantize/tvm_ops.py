"""fp32 ops the NumPy reference has no rule for, computed by TVM one op at a time.

Real networks carry ops tvm-mp never quantizes (resize, transposed convolution, power, strided slices, ...). The
reference (:mod:`tvm_mp.quantize.interpreter`) computes such an op by building a Relax function holding just that
call -- same attributes, the argument types the IR gives it -- with ``tvm.compile(..., "llvm")`` and running it on
the relax VM. The built executable is cached per function (op, attributes, argument shapes and dtypes, inline
constants), so a network's ops build once per process. These ops run in float: the reference and the compiled
model agree on them to float tolerance (TVM may fuse them differently), not bit for bit; integer layers stay exact.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..errors import UnsupportedError

#: Built executables kept (least recently used dropped first).
CACHE_SIZE = 512
_CACHE: OrderedDict = OrderedDict()  # structural hash -> [(function, VirtualMachine)]


def _is_tensor_arg(arg) -> bool:
    return isinstance(arg, relax.Var) or (isinstance(arg, relax.Expr) and not _tvm.is_const(arg)
                                          and not _tvm.is_prim_value(arg) and not isinstance(arg, relax.ShapeExpr)
                                          and isinstance(getattr(arg, "ty", None), relax.TensorType))


def _leaves(call) -> list:
    """The call's arguments that become parameters: tensor variables, also inside tuples."""
    out = []
    for arg in call.args:
        if isinstance(arg, relax.Tuple):
            out.extend(f for f in arg.fields if _is_tensor_arg(f))
        elif _is_tensor_arg(arg):
            out.append(arg)
    return out


def _function(call, shapes: Sequence[tuple[int, ...]] | None) -> relax.Function:
    """``main(params) = op(args)``; parameters typed as in the IR, or with ``shapes`` (same order as
    :func:`_leaves`)."""
    leaves = _leaves(call)
    params = []
    for i, leaf in enumerate(leaves):
        ty = leaf.ty if shapes is None else _tvm.tensor_type(shapes[i], str(leaf.ty.dtype))
        params.append(relax.Var(f"a{i}", ty))
    sub = {leaf: p for leaf, p in zip(leaves, params)}

    def replace(arg):
        if isinstance(arg, relax.Tuple):
            return relax.Tuple([replace(f) for f in arg.fields])
        for leaf, p in sub.items():
            if leaf.same_as(arg):
                return p
        return arg

    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit(relax.Call(call.op, [replace(a) for a in call.args], call.attrs, call.ty_args))
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    return bb.get()["main"]


def _machine(func: relax.Function):
    key = _tvm.structural_hash(func)
    entries = _CACHE.get(key, [])
    for known, machine in entries:
        if _tvm.structural_equal(known, func):
            _CACHE.move_to_end(key)
            return machine
    ex = tvm.compile(tvm.IRModule({"main": func}), "llvm")
    machine = _tvm.vm(ex)
    entries.append((func, machine))
    _CACHE[key] = entries
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return machine


def _flat_arrays(call, args: Sequence) -> list[np.ndarray]:
    """The NumPy values of :func:`_leaves`, in the same order (``args`` as the interpreter evaluated them)."""
    out = []
    for arg, value in zip(call.args, args):
        if isinstance(arg, relax.Tuple):
            out.extend(np.asarray(v) for f, v in zip(arg.fields, value) if _is_tensor_arg(f))
        elif _is_tensor_arg(arg):
            out.append(np.asarray(value))
    return out


def _concat(parts: list):
    if isinstance(parts[0], tuple):
        return tuple(_concat([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate(parts, axis=0)


def run_op(call: relax.Call, args: Sequence):
    """The value of ``call`` (a Relax op call) on the evaluated ``args``, computed by TVM.

    Arrays whose shapes are the IR's run as they are. A batch that is a multiple of the IR's (the interpreter runs
    calibration batches through a batch-1 graph) runs block by block; other shapes build a function for the shapes
    seen."""
    name = call.op.name
    arrays = _flat_arrays(call, args)
    ir_shapes = [_tvm.expr_shape(leaf) for leaf in _leaves(call)]
    try:
        if all(a.shape == s for a, s in zip(arrays, ir_shapes)):
            return _run(_machine(_function(call, None)), arrays)
        block = ir_shapes[0][0] if ir_shapes and ir_shapes[0] else 0
        batch = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
        if block and batch % block == 0 and all(
                a.shape[1:] == s[1:] and len(s) and s[0] == block and a.shape[0] == batch
                for a, s in zip(arrays, ir_shapes)):
            machine = _machine(_function(call, None))
            return _concat([_run(machine, [a[i : i + block] for a in arrays]) for i in range(0, batch, block)])
        return _run(_machine(_function(call, [a.shape for a in arrays])), arrays)
    except UnsupportedError:
        raise
    except Exception as err:  # TVM's own error types: one line naming the op
        raise UnsupportedError(f"the reference could not run op {name} through TVM: {_tvm.error_line(err)}") \
            from None


def _run(machine, arrays: list[np.ndarray]):
    return _tvm.run_relax(machine, arrays)
