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


HARNESS_C = r"""
/* tvm-mp bare harness: runs calls into a TVM-generated shared library without the TVM runtime. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int32_t device_type, device_id; } Device;
typedef struct { uint8_t code, bits; uint16_t lanes; } DType;
typedef struct {
  void* data; Device device; int32_t ndim; DType dtype; int64_t* shape; int64_t* strides; uint64_t byte_offset;
} Tensor;
typedef struct { int32_t type_index; uint32_t zero_padding; union { int64_t v_int64; void* v_ptr; }; } Any;
typedef int (*SafeCall)(void*, const Any*, int32_t, Any*);
typedef struct { void* sync_handle; int32_t num_task; } ParallelEnv;
typedef int (*ParallelLambda)(int, ParallelEnv*, void*);

static char last_error[1024];
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  snprintf(last_error, sizeof last_error, "%s:", kind ? kind : "Error");
  for (int i = 0; i < n; ++i)
    if (parts[i]) strncat(last_error, parts[i], sizeof last_error - strlen(last_error) - 1);
}
static void* alloc_ws(int dt, int di, uint64_t n, int c, int b) {
  (void)dt; (void)di; (void)c; (void)b; return aligned_alloc(64, (n + 63) / 64 * 64);
}
static int free_ws(int dt, int di, void* p) { (void)dt; (void)di; free(p); return 0; }
static int parallel_launch(ParallelLambda f, void* cdata, int num_task) {
  ParallelEnv env = {0, 1}; (void)num_task; return f(0, &env, cdata);
}
static int parallel_barrier(int task, ParallelEnv* env) { (void)task; (void)env; return 0; }

#define MAXB 4096
#define MAXC 4096
#define MAXA 64
static Tensor bufs[MAXB];
static int64_t shapes[MAXB][8];
static size_t nbytes[MAXB];
static SafeCall calls[MAXC];
static int call_args[MAXC][MAXA], call_nargs[MAXC], ncalls;
static int outs[MAXB], nouts; static char out_files[MAXB][512];

static void die(const char* m, const char* a) { fprintf(stderr, "harness: %s %s\n", m, a ? a : ""); exit(2); }

int main(int argc, char** argv) {
  if (argc < 3) die("usage: harness PROGRAM REPEATS", 0);
  FILE* f = fopen(argv[1], "r"); if (!f) die("cannot open", argv[1]);
  int repeats = atoi(argv[2]);
  void* lib = 0; char word[64], path[512];
  while (fscanf(f, "%63s", word) == 1) {
    if (!strcmp(word, "lib")) {
      if (fscanf(f, "%511s", path) != 1) die("bad lib line", 0);
      lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL); if (!lib) die("dlopen failed:", dlerror());
      void** p;
      if ((p = dlsym(lib, "__TVMBackendAllocWorkspace"))) *p = (void*)alloc_ws;
      if ((p = dlsym(lib, "__TVMBackendFreeWorkspace"))) *p = (void*)free_ws;
      if ((p = dlsym(lib, "__TVMBackendParallelLaunch"))) *p = (void*)parallel_launch;
      if ((p = dlsym(lib, "__TVMBackendParallelBarrier"))) *p = (void*)parallel_barrier;
    } else if (!strcmp(word, "buf")) {
      int id, code, bits, ndim; size_t n = 1;
      if (fscanf(f, "%d %d %d %d", &id, &code, &bits, &ndim) != 4 || id >= MAXB || ndim > 8) die("bad buf", 0);
      for (int d = 0; d < ndim; ++d) { long long s; if (fscanf(f, "%lld", &s) != 1) die("bad shape", 0);
        shapes[id][d] = s; n *= (size_t)s; }
      if (fscanf(f, "%511s", path) != 1) die("bad buf file", 0);
      nbytes[id] = n * (size_t)bits / 8;
      Tensor* t = &bufs[id];
      t->data = aligned_alloc(64, (nbytes[id] + 64) / 64 * 64); memset(t->data, 0, (nbytes[id] + 64) / 64 * 64);
      t->device.device_type = 1; t->device.device_id = 0; t->ndim = ndim;
      t->dtype.code = (uint8_t)code; t->dtype.bits = (uint8_t)bits; t->dtype.lanes = 1;
      t->shape = shapes[id]; t->strides = 0; t->byte_offset = 0;
      if (strcmp(path, "-")) {
        FILE* d = fopen(path, "rb"); if (!d) die("cannot open", path);
        if (fread(t->data, 1, nbytes[id], d) != nbytes[id]) die("short read", path); fclose(d);
      }
    } else if (!strcmp(word, "call")) {
      char fname[300], sym[320]; int nargs;
      if (fscanf(f, "%299s %d", fname, &nargs) != 2 || nargs > MAXA || ncalls >= MAXC) die("bad call", 0);
      snprintf(sym, sizeof sym, "__tvm_ffi_%s", fname);
      calls[ncalls] = (SafeCall)dlsym(lib, sym); if (!calls[ncalls]) die("missing symbol", sym);
      for (int a = 0; a < nargs; ++a) if (fscanf(f, "%d", &call_args[ncalls][a]) != 1) die("bad call arg", 0);
      call_nargs[ncalls++] = nargs;
    } else if (!strcmp(word, "out")) {
      if (fscanf(f, "%d %511s", &outs[nouts], out_files[nouts]) != 2) die("bad out", 0); ++nouts;
    } else die("unknown directive", word);
  }
  fclose(f);
  Any args[MAXA]; Any ret;
  for (int r = 0; r < repeats; ++r)
    for (int c = 0; c < ncalls; ++c) {
      for (int a = 0; a < call_nargs[c]; ++a) {
        args[a].type_index = 7; args[a].zero_padding = 0; args[a].v_ptr = &bufs[call_args[c][a]];
      }
      ret.type_index = 0; ret.zero_padding = 0; ret.v_int64 = 0;
      if (calls[c](0, args, call_nargs[c], &ret) != 0) die("kernel failed:", last_error);
    }
  for (int o = 0; o < nouts; ++o) {
    FILE* d = fopen(out_files[o], "wb"); if (!d) die("cannot write", out_files[o]);
    fwrite(bufs[outs[o]].data, 1, nbytes[outs[o]], d); fclose(d);
  }
  return 0;
}
"""

_DTYPE_CODES = {"int": 0, "uint": 1, "float": 2}


def _dtype_fields(dtype: np.dtype) -> tuple[int, int]:
    dtype = np.dtype(dtype)
    kind = {"i": "int", "u": "uint", "f": "float", "b": "uint"}[dtype.kind]
    return _DTYPE_CODES[kind], dtype.itemsize * 8


def write_program(program: Program, directory: Path, lib: Path) -> Path:
    """The harness's text form of ``program`` (constants written next to it)."""
    lines = [f"lib {lib}"]
    for i, (shape, dtype, value) in enumerate(program.buffers):
        src = "-"
        if value is not None:
            src = str(directory / f"buf{i}.bin")
            np.ascontiguousarray(value, dtype=dtype).tofile(src)
        code, bits = _dtype_fields(dtype)
        lines.append(f"buf {i} {code} {bits} {len(shape)} {' '.join(map(str, shape))} {src}")
    for name, args in program.calls:
        lines.append(f"call {name} {len(args)} {' '.join(map(str, args))}")
    for i in program.outputs:
        lines.append(f"out {i} {directory / f'out{i}.bin'}")
    path = directory / "program.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


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
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / "harness.c"
    exe = directory / "harness"
    if not exe.exists():
        src.write_text(HARNESS_C)
        _run([CROSS_CC, "-O2", "-rdynamic", "-o", str(exe), str(src), "-ldl"], "building the aarch64 harness")
    return exe


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
