"""Import an ONNX model into a static-shape Relax module ready for tvm-mp's passes.

Real exported ONNX files rarely import into TVM as they are: they carry shape subgraphs
(``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``), Constant nodes, BatchNormalization after every conv
and symbolic batch or spatial dims, and TVM's importer trips over several of these. :func:`load_onnx` fixes the
input shapes, lets onnxslim fold what the fixed shapes make constant (and fuse Conv+BatchNormalization), then
imports with TVM and folds the remaining constant expressions in Relax, so the result has only static tensors
and every conv / matmul weight is a Relax constant that later passes can quantize.

:func:`canonicalize` (defined in :mod:`tvm_mp.canonical`, re-exported here) is that last Relax step on its own:
it takes a module a TVM user already has (``relax.frontend.onnx.from_onnx`` output, a ``relax.frontend.nn``
module exported with ``export_tvm`` and its params bound, TVMScript) into the same form.
"""

from __future__ import annotations

import contextlib
import io
import numbers
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import tvm

from . import _tvm
from .canonical import canonicalize
from .errors import InputShapeError, ModelError, UnsupportedError

__all__ = ["canonicalize", "load_onnx"]

#: A declared input: its ONNX element type and dims (int when static, str when symbolic, None when unknown),
#: or ``dims=None`` when the model declares no shape at all.
_Declared = tuple[int, "list[int | str | None] | None"]


def load_onnx(model: str | os.PathLike | onnx.ModelProto, shapes: Mapping[str, tuple] | None = None) -> tvm.IRModule:
    """Load an ONNX model and return a Relax ``IRModule`` whose ``main`` has only static tensor shapes.

    Args:
        model: path of an ``.onnx`` file, or an ``onnx.ModelProto`` (copied; the caller's proto is not changed).
        shapes: fixed shape of each input with symbolic (dynamic) dims, ``{input name: (d0, d1, ...)}``. Needed
            when the model declares dynamic dims; inputs left out keep their declared shape. A given shape
            overrides the declared one (so a static spatial size can be changed) but must keep its rank.

    Returns:
        A module whose ``main`` takes the graph inputs in their ONNX order (names sanitized by TVM, e.g.
        ``input.1`` -> ``input_1``) and whose every tensor shape is static.

    What is folded, in order:

      1. The input shapes are fixed, then onnxslim (a dependency of tvm-mp) simplifies the
         ONNX graph: shape subgraphs and Constant nodes become initializers, and each Conv (or ConvTranspose)
         followed by a BatchNormalization is fused into one conv with new weight and bias. onnxslim folds
         general constant subgraphs with onnxruntime when it is installed; shape subgraphs fold without it.
      2. TVM's ONNX importer converts the graph with the weights as constants.
      3. :func:`canonicalize`, the same step that brings any user's Relax module into tvm-mp's form:
         ``CanonicalizeClip`` (after the first constant folding: the importer's Clip becomes one ``R.clip``
         again), ``FoldConstant`` (so a Gemm weight is ``W^T`` as one constant and a conv bias is a
         ``(1, C, 1, 1)`` constant in ``R.add``), ``FoldBatchnormToConv2D`` for a bias-free conv + batch_norm
         left (only when onnxslim failed), ``DecomposeOpsForInference`` (a BatchNormalization that does
         not follow a conv becomes subtract/divide/multiply/add with constant operands), ``FoldConstant``
         again, then ``CanonicalizeBindings`` and dead-code elimination to drop the leftovers.

    Errors are each a one-line message that says what to fix.

    Raises:
        ModelError: the file is missing, not ONNX, truncated, or TVM's importer fails on the graph.
        UnsupportedError: also for a default-domain opset newer than the installed ``onnx`` knows.
        InputShapeError: ``shapes`` names an unknown input, has the wrong rank or a non-positive or
            non-integer dim, or the model has dynamic dims and no shape was given for them, or a tensor would hold
            more than 2**31 - 1 elements (TVM indexes with int32; use a smaller batch).
        UnsupportedError: the graph has op types TVM's importer does not convert (or cannot convert in this
            form or opset), or a tensor shape stays dynamic after the inputs are fixed (data-dependent ops such
            as NonZero).
    """
    proto, source = _load(model)
    declared = _declared_inputs(proto)
    fixed = _resolve_shapes(declared, shapes)
    dtypes = {name: _np_dtype(elem) for name, (elem, _) in declared.items()}

    folded = _simplify(proto, fixed)
    graph_model = folded if folded is not None else _with_fixed_inputs(proto, fixed)
    _check_ops(graph_model)
    mod = _import(graph_model, fixed, dtypes, source)
    return canonicalize(mod)


# --- loading -------------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _load(model: Any) -> tuple[onnx.ModelProto, str]:
    """Read or copy the model; raise ModelError for anything that is not a complete ONNX model."""
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        source = "the given ModelProto"
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise ModelError(_one_line(f"model file not found: {path}; check the path")) from None
        if path.is_dir():
            raise ModelError(_one_line(f"{path} is a directory; pass the path of an .onnx file")) from None
        try:
            proto = onnx.load(str(path))
        except PermissionError as err:
            raise ModelError(_one_line(f"cannot read {path}: {err.strerror}; check its permissions")) from None
        except Exception as err:  # protobuf DecodeError, missing external data, ...
            raise ModelError(
                _one_line(
                    f"{path} is not a readable ONNX model ({_tvm.error_line(err)}); the file is truncated or not "
                    "ONNX: re-export or re-download it"
                )
            ) from None
        source = str(path)
    else:
        raise ModelError(
            f"model must be a path to an .onnx file or an onnx.ModelProto, got {type(model).__name__}"
        ) from None
    _check_complete(proto, source)
    _check_opset(proto, source)
    return proto, source


def _check_opset(proto: onnx.ModelProto, source: str) -> None:
    """Refuse a default-domain opset newer than the installed onnx package knows: its ops may mean something the
    importer (written for known opsets) does not compute."""
    newest = onnx.defs.onnx_opset_version()
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > newest:
            raise UnsupportedError(_one_line(
                f"{source} uses ONNX opset {imp.version}, newer than the newest this onnx package knows ({newest}); "
                f"re-export the model with opset {newest} or lower")) from None


def _check_complete(proto: onnx.ModelProto, source: str) -> None:
    """Catch protos that parsed but hold no usable graph (random bytes, a file cut at a field boundary)."""
    hint = "the file is truncated or not ONNX: re-export or re-download it"
    graph = proto.graph
    if proto.ir_version <= 0 or not graph.node or not graph.output:
        raise ModelError(_one_line(f"{source} holds no ONNX graph (no IR version, nodes or outputs); {hint}"))
    defined = {t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer}
    defined |= {i.name for i in graph.input}
    for node in graph.node:
        defined.update(node.output)
    missing = sorted({name for node in graph.node for name in node.input if name and name not in defined})
    missing += sorted({o.name for o in graph.output if o.name not in defined})
    if missing:
        names = ", ".join(repr(n) for n in missing[:5])
        raise ModelError(_one_line(f"{source}: tensor(s) {names} are used but never defined; {hint}"))


# --- input shapes ---------------------------------------------------------------------------------------------


def _declared_inputs(proto: onnx.ModelProto) -> dict[str, _Declared]:
    """Real graph inputs (initializers listed as inputs are weights, not inputs) with their declared dims."""
    weights = {t.name for t in proto.graph.initializer}
    declared: dict[str, _Declared] = {}
    for inp in proto.graph.input:
        if inp.name in weights:
            continue
        ttype = inp.type.tensor_type
        if not ttype.HasField("shape"):
            declared[inp.name] = (ttype.elem_type, None)
            continue
        dims: list[int | str | None] = []
        for d in ttype.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
        declared[inp.name] = (ttype.elem_type, dims)
    return declared


def _fmt_dims(dims: list | None) -> str:
    if dims is None:
        return "(no declared shape)"
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _example(dims: list | None) -> str:
    if dims is None:
        return "(...)"
    vals = [str(d) if isinstance(d, int) else "1" for d in dims]
    return "(" + ", ".join(vals) + ("," if len(vals) == 1 else "") + ")"


def _is_static(dims: list | None) -> bool:
    return dims is not None and all(isinstance(d, int) for d in dims)


def _resolve_shapes(declared: dict[str, _Declared], shapes: Mapping[str, tuple] | None) -> dict[str, tuple[int, ...]]:
    """Validate the user's shapes against the declared inputs; return a full static shape for every input."""
    names = ", ".join(repr(n) for n in declared) or "(none)"
    if shapes is None:
        shapes = {}
    elif not isinstance(shapes, Mapping):
        raise InputShapeError(
            _one_line(f"shapes must be a dict {{input name: shape tuple}}, got {type(shapes).__name__}; "
                      f"the model's inputs are {names}")
        ) from None
    unknown = [k for k in shapes if k not in declared]
    if unknown:
        raise InputShapeError(
            _one_line(f"shapes names unknown input(s) {', '.join(repr(k) for k in unknown)}; "
                      f"the model's inputs are {names}")
        ) from None

    fixed: dict[str, tuple[int, ...]] = {}
    needed = []
    for name, (_, dims) in declared.items():
        if name in shapes:
            fixed[name] = _check_shape(name, shapes[name], dims)
        elif _is_static(dims):
            fixed[name] = tuple(dims)
        else:
            needed.append(name)
    if needed:
        example = ", ".join(f"{n!r}: {_example(declared[n][1])}" for n in needed)
        dyn = "; ".join(f"{n!r} {_fmt_dims(declared[n][1])}" for n in needed)
        lead = "the model has dynamic input dims" if not shapes else "shapes has no entry for dynamic input(s)"
        raise InputShapeError(
            _one_line(f"{lead}: {dyn}; pass shapes= with fixed sizes, e.g. shapes={{{example}}}")
        ) from None
    return fixed


def _check_shape(name: str, shape: Any, dims: list | None) -> tuple[int, ...]:
    """One user shape: a sequence of positive ints of the declared rank."""
    where = f"shape for input {name!r}"
    declared = f"the model declares {_fmt_dims(dims)}"
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise InputShapeError(
            _one_line(f"{where} must be a tuple of ints, got {shape!r}; {declared}")) from None
    shape = tuple(shape)
    bad = [d for d in shape if isinstance(d, bool) or not isinstance(d, numbers.Integral)]
    if bad:
        raise InputShapeError(
            _one_line(f"{where} has non-integer dim(s) {bad!r} in {shape!r}; give positive integers, "
                      f"{declared}")) from None
    if any(int(d) <= 0 for d in shape):
        raise InputShapeError(
            _one_line(f"{where} has non-positive dim(s) in {tuple(int(d) for d in shape)}; give positive "
                      f"integers, {declared}")) from None
    shape = tuple(int(d) for d in shape)
    if dims is not None and len(shape) != len(dims):
        raise InputShapeError(
            _one_line(f"{where} has rank {len(shape)} {shape}, expected rank {len(dims)}: {declared}, "
                      f"e.g. {_example(dims)}")) from None
    return shape


def _np_dtype(elem_type: int) -> str:
    if not elem_type:
        return "float32"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # an ONNX type numpy has no name for: let the importer decide
        return "float32"


# --- ONNX-level simplification -----------------------------------------------------------------------------


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _simplify(proto: onnx.ModelProto, fixed: dict[str, tuple[int, ...]]) -> onnx.ModelProto | None:
    """Fix the input shapes and fold constants / fuse Conv+BN with onnxslim (on a copy: onnxslim edits its argument
    in place); None if it fails (the raw graph is then imported and canonicalized)."""
    try:
        import onnxslim

        specs = [f"{name}:{','.join(str(d) for d in shape)}" for name, shape in fixed.items()]
        with _quiet():
            out = onnxslim.slim(_copy(proto), input_shapes=specs or None)
        if isinstance(out, onnx.ModelProto) and out.graph.node:
            return out
    except Exception:  # onnxslim cannot handle this graph: import it unsimplified
        pass
    return None


def _with_fixed_inputs(proto: onnx.ModelProto, fixed: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """The model with its input dims set to ``fixed`` (used only when neither simplifier could run)."""
    out = _copy(proto)
    for inp in out.graph.input:
        if inp.name in fixed:
            shape = inp.type.tensor_type.shape
            shape.ClearField("dim")
            for d in fixed[inp.name]:
                shape.dim.add().dim_value = d
    return out


@contextlib.contextmanager
def _quiet():
    """Silence the chatter (warnings, prints) of the simplifiers and the importer; errors still propagate."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _graph_op_types(graph: onnx.GraphProto) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops |= _graph_op_types(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    ops |= _graph_op_types(g)
    return ops


def _check_ops(proto: onnx.ModelProto) -> None:
    unsupported = sorted(_graph_op_types(proto.graph) - _tvm.onnx_importer_ops())
    if unsupported:
        raise UnsupportedError(
            _one_line(f"TVM's ONNX importer does not support op type(s) {', '.join(unsupported)}; replace them "
                      "with supported ops (or remove them) before exporting the model")
        ) from None


# --- Relax import and folding -------------------------------------------------------------------------------


def _import(proto: onnx.ModelProto, fixed: dict, dtypes: dict, source: str) -> tvm.IRModule:
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log):
            warnings.simplefilter("ignore")
            return _tvm.relax_from_onnx(proto, fixed, dtypes)
    except Exception as err:  # TVM and onnx raise many types; turn them into one line
        failed = re.findall(r"Error converting operator (\S+)", log.getvalue())
        where = f" at a {failed[-1].rstrip(',')} node" if failed else ""
        line = _tvm.error_line(err).rstrip(".")
        if isinstance(err, NotImplementedError):
            raise UnsupportedError(
                _one_line(f"TVM's ONNX importer cannot convert {source}{where}: {line}; replace that op or "
                          "re-export with a different opset")
            ) from None
        raise ModelError(
            _one_line(f"TVM's ONNX importer failed on {source}{where}: {line}; check that the input shapes fit "
                      "the model, or re-export it (e.g. with another opset)")
        ) from None
