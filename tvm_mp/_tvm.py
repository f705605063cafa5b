"""The few TVM calls whose API still moves between releases, kept in one place.

tvm-mp pins apache-tvm 0.27; when TVM is upgraded, this module is the one to touch. Everything else imports
TVM names through here when they have changed recently (constants, targets, tensors, VM, schedules).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tvm
from tvm import relax


def const(array: np.ndarray) -> relax.Expr:
    """A Relax constant holding a copy of ``array``, keeping its dtype (``relax.const`` narrows int64 to int32)."""
    array = np.ascontiguousarray(array)
    return relax.const(array, str(array.dtype))


def is_const(expr: Any) -> bool:
    """True for a Relax tensor constant (0.27: ``GenericConst``; scalar PrimValues are Constants too)."""
    return isinstance(expr, tvm.ir.expr.GenericConst)


def is_prim_value(expr: Any) -> bool:
    """True for a Relax PrimValue argument (0.27: plain ``IntImm`` / ``FloatImm``)."""
    return isinstance(expr, tvm.ir.expr.Constant) and not isinstance(expr, tvm.ir.expr.GenericConst)


def prim_value(expr: Any) -> float | int:
    value = expr.value
    return value.value if hasattr(value, "value") else value


def const_value(expr: Any) -> np.ndarray:
    """The NumPy value of a Relax constant (0.27: ``GenericConst.value``)."""
    return expr.value.numpy()


def expr_shape(expr: Any) -> tuple[int, ...]:
    """Static shape of a tensor-typed Relax expression."""
    ty = expr.ty
    return tuple(int(v) for v in ty.shape.values)


def expr_dtype(expr: Any) -> str:
    return str(expr.ty.dtype)


def tensor_type(shape: Sequence[int], dtype: str) -> relax.TensorType:
    return relax.TensorType(tuple(int(s) for s in shape), dtype)


def to_device(array: np.ndarray, dev=None):
    return tvm.runtime.tensor(np.ascontiguousarray(array), dev or tvm.cpu())


def build(mod: tvm.IRModule, target: Any = "llvm"):
    """Compile a Relax or TIR module (``tvm.compile``) for a ``tvm.target.Target`` or its JSON dict (tvm-mp's
    target names are parsed by :func:`tvm_mp.targets.parse`; pass its ``tvm_target``)."""
    return tvm.compile(mod, target if isinstance(target, tvm.target.Target) else tvm.target.Target(target))


def vm(executable, dev=None):
    return relax.VirtualMachine(executable, dev or tvm.cpu())


def run_relax(executable_or_vm, inputs: Sequence[np.ndarray], func: str = "main", dev=None):
    """Run a Relax function on NumPy inputs; return NumPy (a tuple for tuple outputs)."""
    machine = executable_or_vm if isinstance(executable_or_vm, relax.VirtualMachine) else vm(executable_or_vm, dev)
    out = machine[func](*[to_device(x, dev) for x in inputs])
    return _to_numpy(out)


def _to_numpy(out):
    if hasattr(out, "numpy"):
        return out.numpy()
    return tuple(_to_numpy(o) for o in out)


def schedule(prim_func) -> "tvm.s_tir.Schedule":
    return tvm.s_tir.Schedule(prim_func)


#: What a schedule primitive raises when it cannot transform a PrimFunc (0.27: ``tvm.s_tir``).
ScheduleError = tvm.s_tir.ScheduleError


def round_half_even(x, llvm: bool):
    """``x`` rounded to the nearest integer, ties to even (NumPy's ``rint``), as a TIR float32 expression. 0.27's
    vectorizer scalarizes ``tirx.nearbyint`` (the call is not marked vectorizable), and LLVM then vectorizes the
    scalar loop across the outer one with gathers and scattered byte stores (a (1, 24, 16, 16) quantize: 4.8 us
    instead of 0.6); for LLVM targets the same rounding is the pure intrinsic ``llvm.roundeven``, which it
    vectorizes. Other code generators (C) get ``nearbyint`` (the default rounding mode rounds ties to even)."""
    if llvm:
        return tvm.tirx.call_llvm_pure_intrin("float32", "llvm.roundeven", x)
    return tvm.tirx.nearbyint(x)


def leading_spatial_iters(sch, block) -> tuple[int, int]:
    """(leading data-parallel iterators, all iterators) of ``block``: its spatial loops come first, then its
    reduction loops (0.27 prints a data-parallel ``iter_type`` as ``0``; older versions by name)."""
    kinds = [str(iv.iter_type) for iv in sch.get(block).iter_vars]
    n_spatial = 0
    for kind in kinds:
        if kind not in ("0", "DataPar", "IterVarType.DataPar"):
            break
        n_spatial += 1
    return n_spatial, len(kinds)


def get_block(sch, name: str):
    """``Schedule.get_sblock`` in 0.27 (``get_block`` before)."""
    return sch.get_sblock(name)


def error_line(err: BaseException) -> str:
    """The last meaningful line of a TVM error, for wrapping into a one-line tvm-mp error."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def onnx_importer_ops() -> frozenset[str]:
    """ONNX op types that TVM's Relax ONNX importer converts (0.27: the private ``_get_convert_map``).

    ``Constant`` and ``If`` are handled by the importer outside the map, so they are included.
    """
    from tvm.relax.frontend.onnx import onnx_frontend

    return frozenset(onnx_frontend._get_convert_map()) | {"Constant", "If"}


def relax_from_onnx(model, shape_dict: Mapping[str, Sequence[int]], dtype_dict: Mapping[str, str]) -> tvm.IRModule:
    """Import an ONNX ``ModelProto`` into Relax with the weights as constants (not function parameters)."""
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(
        model,
        shape_dict={k: list(v) for k, v in shape_dict.items()},
        dtype_dict=dict(dtype_dict),
        keep_params_in_input=False,
    )


def var_name(var: Any) -> str:
    """Name of a Relax ``Var`` (0.27: ``Var.name``; ``name_hint`` before) or a ``GlobalVar`` (``name_hint``)."""
    name = getattr(var, "name", None)
    return str(name if name is not None else var.name_hint)


def structural_equal(a, b) -> bool:
    """Structural equality of IR (0.27 exposes only ``tvm.ir.assert_structural_equal``)."""
    try:
        tvm.ir.assert_structural_equal(a, b)
    except ValueError:
        return False
    return True


_TIR_CHILDREN = ("block", "body", "init", "value", "a", "b", "seq", "then_case", "else_case", "condition")


def tir_nodes(prim_func) -> list:
    """Statements and expressions of a PrimFunc body, pre-order (0.27 exposes no TIR post_order_visit to Python)."""
    out, stack = [], [prim_func.body]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        out.append(node)
        for name in _TIR_CHILDREN:
            child = getattr(node, name, None) if not isinstance(node, (int, float, str)) else None
            if child is None:
                continue
            if isinstance(child, (list, tuple)) or type(child).__name__ == "Array":
                stack.extend(child)
            elif hasattr(child, "same_as"):
                stack.append(child)
    return out


def runtime_threads() -> int:
    """Threads the TVM runtime's thread pool runs kernels on."""
    return int(tvm.get_global_func("runtime.NumThreads")())


def structural_hash(node: Any) -> int:
    """Structural hash of an IR node (0.27: in ``tvm_ffi``, no longer ``tvm.ir``)."""
    import tvm_ffi

    return tvm_ffi.structural_hash(node)


def legalize_like_compile(mod: tvm.IRModule, target) -> tvm.IRModule:
    """``mod`` legalized as ``tvm.compile`` legalizes it for a CPU: its ``call_tir`` calls are the functions the VM
    will call. 0.27: the first passes of ``relax.pipeline.default_build_pipeline`` (what ``tvm.compile`` runs for a
    CPU target; no operator fusion)."""
    from tvm.relax import backend

    passes = [backend.DispatchSampling(), backend.DispatchSortScan(), relax.transform.LegalizeOps(),
              relax.transform.RewriteDataflowReshape()]
    with target:
        return tvm.transform.Sequential(passes)(mod)


def main_bindings(mod: tvm.IRModule, func: str = "main") -> list:
    """Every binding of a Relax function's blocks, in order."""
    return [b for block in mod[func].body.blocks for b in block.bindings]


def called_prim_funcs(mod: tvm.IRModule) -> set[str]:
    """Names of the PrimFuncs some Relax function of ``mod`` calls (``call_tir``)."""
    called = set()
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            called.update(callee for kind, callee, _, _ in map(binding_call, main_bindings(mod, gv.name_hint))
                          if kind == "call_tir")
    return called


def binding_call(binding) -> tuple[str, str, list[tuple[tuple[int, ...], str]], tuple[tuple[int, ...], str] | None]:
    """``(kind, callee, [(shape, dtype) of each tensor argument], (shape, dtype) of the result)`` of a binding:
    kind ``"call_tir"`` (callee: the PrimFunc's name), ``"view"`` (reshape: a VM builtin), ``"op"`` (another
    Relax op) or ``"other"``."""
    value = binding.value
    if not isinstance(value, relax.Call):
        return "other", "", [], None

    def tensor(expr):
        ty = expr.ty
        return tuple(int(v) for v in ty.shape.values), str(ty.dtype)

    name = str(getattr(value.op, "name", ""))
    if name == "relax.call_tir":
        args = value.args[1]
        args = list(args.fields) if isinstance(args, relax.Tuple) else [args]
        return "call_tir", var_name(value.args[0]), [tensor(a) for a in args], tensor(binding.var)
    if name == "relax.reshape":
        return "view", name, [], None
    return ("op" if name else "other"), name, [], None


def unknown_llvm_features(triple: str, mcpu: str, features: Sequence[str]) -> list[str]:
    """The names in ``features`` (without +/-) that this LLVM does not know for ``triple``/``mcpu``. LLVM says so
    only as a warning on stderr (and builds without the feature); its warning lines are captured here, not shown."""
    import os
    import tempfile

    from tvm.target import codegen

    names = sorted({str(f).lstrip("+-") for f in features if str(f).lstrip("+-")})
    if not names:
        return []
    spec: dict[str, Any] = {"kind": "llvm", "mattr": [f"+{n}" for n in names]}
    if triple:
        spec["mtriple"] = triple
    if mcpu:
        spec["mcpu"] = mcpu
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            probe = tvm.target.Target(spec)
            known = [n for n in names if codegen.llvm_cpu_has_features([n], probe)]
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return [n for n in names if n not in known]


#: Lines TVM's runtime logs while it saves an executable that say nothing to a user (TVM 0.27 logs every memory
#: scope of the VM executable as a warning, "Scope Saving: global").
_SAVE_NOISE = ("Scope Saving:",)


def export_library(executable, path: str, **kwargs) -> None:
    """``executable.export_library(path, **kwargs)`` without TVM's save-time log noise (:data:`_SAVE_NOISE`; every
    other line it writes to stderr is passed through)."""
    import os
    import sys
    import tempfile

    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            executable.export_library(path, **kwargs)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if not any(noise in line for noise in _SAVE_NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
