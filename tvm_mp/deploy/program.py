"""A lowered single-input, single-output Relax model as a straight-line *program*: buffers (input, constants,
intermediates), calls of TIR kernels, and the output.

``main`` after ``LegalizeOps`` is a straight line of ``call_tir`` on static shapes; every callee becomes one
kernel of a plain TIR module (compiled into one object or shared library), every operand a buffer. The
ahead-of-time executor of the standalone bundle (:mod:`tvm_mp.deploy.aarch64`) and the qemu test harness
(``tvm_mp.testing.qemu``) both run such a program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm

from .. import _tvm
from ..errors import UnsupportedError


@dataclass
class Program:
    """Buffers ``(shape, dtype, constant value or None)``, calls ``(kernel name, buffer ids)`` and output ids."""

    buffers: list[tuple[tuple[int, ...], np.dtype, np.ndarray | None]] = field(default_factory=list)
    calls: list[tuple[str, list[int]]] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)

    def buffer(self, shape, dtype, value: np.ndarray | None = None) -> int:
        self.buffers.append((tuple(int(s) for s in shape), np.dtype(dtype), value))
        return len(self.buffers) - 1

    def call(self, name: str, args: list[int]) -> None:
        self.calls.append((name, list(args)))

    def nbytes(self, buf: int) -> int:
        shape, dtype, _ = self.buffers[buf]
        return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize

    def constants(self) -> list[int]:
        return [i for i, (_, _, v) in enumerate(self.buffers) if v is not None]

    def intermediates(self) -> list[int]:
        """Buffers the calls write (the output included), in order of first write."""
        consts, ins = set(self.constants()), set(self.inputs)
        seen: list[int] = []
        for _, args in self.calls:
            for a in args:
                if a not in consts and a not in ins and a not in seen:
                    seen.append(a)
        return seen


def model_program(lowered_mod: tvm.IRModule) -> tuple[tvm.IRModule, Program]:
    """``(TIR module of the kernels, Program)`` for a lowered single-input, single-output Relax model."""
    from tvm import relax

    mod = relax.transform.LegalizeOps()(lowered_mod)
    main = mod["main"]
    if len(main.params) != 1:
        raise UnsupportedError(f"the standalone bundle handles one-input models; this one has {len(main.params)}")
    prog = Program()
    env = {}
    param = main.params[0]
    env[param] = prog.buffer(_tvm.expr_shape(param), _tvm.expr_dtype(param))
    prog.inputs = [env[param]]
    tir_funcs = {}

    def operand(expr):
        if _tvm.is_const(expr):
            value = _tvm.const_value(expr)
            return prog.buffer(value.shape, value.dtype, value)
        if expr in env:
            return env[expr]
        raise UnsupportedError(f"the standalone bundle cannot pass a {type(expr).__name__} to a kernel")

    for block in main.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Var):
                env[binding.var] = env[value]
                continue
            if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.call_tir"):
                op = getattr(getattr(value, "op", None), "name", type(value).__name__)
                raise UnsupportedError(f"the standalone bundle runs kernel calls only; {op} has no kernel")
            gv = value.args[0]
            name = gv.name_hint
            tir_funcs[name] = mod[gv].with_attr("global_symbol", name)
            args = [operand(a) for a in value.args[1].fields]
            out = prog.buffer(_tvm.expr_shape(binding.var), _tvm.expr_dtype(binding.var))
            env[binding.var] = out
            prog.call(name, args + [out])
    result = main.body.body
    if result not in env or env[result] in prog.inputs or prog.buffers[env[result]][2] is not None:
        raise UnsupportedError("the standalone bundle needs a model whose output is computed by a kernel")
    prog.outputs = [env[result]]
    return tvm.IRModule(tir_funcs), prog
