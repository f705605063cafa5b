"""Run tvm-mp kernels and whole compiled models for aarch64 under ``qemu-aarch64`` user-mode emulation.

No aarch64 TVM runtime is needed. A kernel (a PrimFunc) or a model (its Relax ``main`` after ``LegalizeOps``:
a straight line of ``call_tir`` on static shapes) becomes a *program*: a list of buffers (inputs, constants,
intermediates), calls into the exported shared library, and outputs. A small C harness (source below), built
with Debian's ``aarch64-linux-gnu-gcc``, loads the library with ``dlopen``, fills the few runtime hooks the
generated code calls (workspace alloc/free, parallel launch -- run serially --, the FFI error setter), runs the
program and writes the outputs; the test compares them with the NumPy reference.

Dynamic instruction counts come from the library's TCG plugin (:mod:`tvm_mp.deploy.emulate`): total and
instruction mix of one run of the program's calls (runs of ``k`` and ``k + 1`` repetitions subtracted).

Tools: ``aarch64-linux-gnu-gcc``, ``qemu-aarch64`` and the aarch64 C library at :data:`SYSROOT` (Debian packages
``gcc-aarch64-linux-gnu``, ``qemu-user``; listed in ``.ci/apt-packages.txt``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deploy import emulate
from ..deploy.emulate import HARNESS_C, write_program  # noqa: F401  (the harness lives in the library)
from ..deploy.program import Program
from ..deploy.program import model_program as _model_program
from ..errors import Error, ToolchainError

CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
HOST_CC = "gcc"


class ToolMissing(ToolchainError):
    """A cross compiler or emulator is not installed."""


def tools_available() -> bool:
    return all(shutil.which(t) for t in (CROSS_CC, QEMU)) and Path(SYSROOT).is_dir()


def require_tools() -> None:
    missing = [t for t in (CROSS_CC, QEMU) if not shutil.which(t)]
    if missing or not Path(SYSROOT).is_dir():
        raise ToolMissing(f"missing {', '.join(missing) or SYSROOT}: apt-get install gcc-aarch64-linux-gnu qemu-user")



@dataclass(frozen=True)
class EmulatedRun:
    """Outputs of a program under qemu and, when counted, dynamic instructions of one run of its calls."""

    outputs: list[np.ndarray]
    instructions: int | None = None
    mix: dict[str, int] | None = None


def _run(cmd: list[str], what: str, timeout_s: float = 600) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise Error(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}")


def build_harness(directory: Path) -> Path:
    require_tools()
    return emulate.build_harness(directory)


def export_aarch64(executable, path: Path) -> Path:
    """Export a ``tvm.compile`` result for aarch64 as a shared library (Debian's cross gcc links it)."""
    import tvm.support.cc as cc

    require_tools()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    executable.export_library(str(path), fcompile=cc.cross_compiler(CROSS_CC))
    return path


def run_program(program: Program, lib: Path, directory: Path, cpu: str = "max", count: bool = False,
                repeats: int = 1) -> EmulatedRun:
    """Run ``program`` under qemu-aarch64 (``-cpu cpu``); with ``count``, also its per-run instruction count."""
    require_tools()
    directory.mkdir(parents=True, exist_ok=True)
    harness = build_harness(directory)
    prog = write_program(program, directory, lib)
    base = [QEMU, "-L", SYSROOT, "-cpu", cpu]
    _run(base + [str(harness), str(prog), str(repeats)], "the emulated run")
    outputs = []
    for i in program.outputs:
        shape, dtype, _ = program.buffers[i]
        outputs.append(np.fromfile(directory / f"out{i}.bin", dtype=dtype).reshape(shape))
    if not count:
        return EmulatedRun(outputs)
    counts = emulate.counted([str(harness), str(prog)], lambda reps: [str(reps)], directory, cpu=cpu)
    return EmulatedRun(outputs, counts.total, counts.mix)


def kernel_program(func_name: str, inputs: list[np.ndarray], output_shapes: list[tuple], output_dtypes) -> Program:
    """A program calling one kernel with ``inputs`` followed by zero-initialized outputs."""
    prog = Program()
    ids = [prog.buffer(a.shape, a.dtype, a) for a in inputs]
    outs = [prog.buffer(s, d) for s, d in zip(output_shapes, output_dtypes)]
    prog.call(func_name, ids + outs)
    prog.outputs = outs
    return prog


def model_program(lowered_mod, input_value: np.ndarray):
    """``(tir IRModule, Program)`` for a lowered single-input, single-output Relax model (the program of the
    standalone bundle, :func:`tvm_mp.deploy.program.model_program`), its input set to ``input_value``."""
    tir_mod, prog = _model_program(lowered_mod)
    (inp,) = prog.inputs
    shape, dtype, _ = prog.buffers[inp]
    prog.buffers[inp] = (shape, dtype, np.asarray(input_value, dtype=dtype).reshape(shape))
    prog.inputs = []
    return tir_mod, prog


def run_bundle(bundle: Path, x: np.ndarray, out_shape, count: bool = False, cc: str = CROSS_CC) -> EmulatedRun:
    """Build the standalone bundle in ``bundle`` with ``make`` and run its demo under qemu-aarch64 on ``x``;
    with ``count``, also the emulated instructions of one inference (runs of 1 and 2 inferences differ by one)."""
    require_tools()
    bundle = Path(bundle)
    _run(["make", "-s", "-C", str(bundle), f"CC={cc}"], "building the bundle")
    np.ascontiguousarray(x, dtype=np.float32).tofile(bundle / "input.bin")
    base = [QEMU, "-L", SYSROOT, str(bundle / "tvm_mp_demo"), str(bundle / "input.bin"), str(bundle / "output.bin")]
    _run(base, "the emulated bundle run")
    out = np.fromfile(bundle / "output.bin", dtype=np.float32).reshape(out_shape)
    if not count:
        return EmulatedRun([out])
    counts = emulate.counted(base[3:], lambda reps: [str(reps)], bundle)
    return EmulatedRun([out], counts.total, counts.mix)
