"""Dynamic instruction counts under ``qemu-aarch64`` (user-mode emulation): a measurement source for aarch64.

The count comes from a TCG plugin (C source below; QEMU's plugin API is a stable C ABI, declared here, so no QEMU
headers are needed; Debian's ``qemu-user`` supports plugins but ships none). For each translated block it adds the
block's instruction count to a total and to the counter of the address range the block lies in (the kernels'
symbols, read with ``nm`` from the statically linked program), and one per instruction to a per-mnemonic counter
(the instruction mix). A program run for ``k`` and ``k + 1`` inferences differs by exactly one inference: that
difference is what is reported, per model and per kernel.

These are **emulated instructions**: a count, not a time (no latency, stalls or issue width of a real core).
Tools: ``qemu-aarch64`` (Debian ``qemu-user``), the host ``gcc`` (builds the plugin) and, for bundles,
``aarch64-linux-gnu-gcc`` (``gcc-aarch64-linux-gnu``); a missing one is a one-line :class:`ToolchainError`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._files import atomic_path, write_atomic
from ..errors import ToolchainError

QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
HOST_CC = "gcc"
CROSS_CC = "aarch64-linux-gnu-gcc"
CROSS_NM = "aarch64-linux-gnu-nm"
#: Debian package of each tool.
PACKAGES = {QEMU: "qemu-user", HOST_CC: "gcc", CROSS_CC: "gcc-aarch64-linux-gnu",
            CROSS_NM: "binutils-aarch64-linux-gnu", "make": "make"}
#: How the counts are labelled wherever they are reported.
BASIS = "emulated instructions (qemu-aarch64 -cpu max)"


def require(*tools: str) -> None:
    """One-line :class:`ToolchainError` naming the Debian packages of the ``tools`` not on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        packages = " ".join(dict.fromkeys(PACKAGES.get(t, t) for t in missing))
        raise ToolchainError(f"{', '.join(missing)} not found on PATH: apt-get install {packages}")


PLUGIN_C = r"""
/* tvm-mp TCG plugin: dynamic instruction count, per address range and per mnemonic (QEMU plugin API v1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb; struct qemu_plugin_insn; typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb*);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb*);
extern struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb*, size_t);
extern char* qemu_plugin_insn_disas(const struct qemu_plugin_insn*);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb*, enum qemu_plugin_op, void*, uint64_t);
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn*, enum qemu_plugin_op, void*,
                                                       uint64_t);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t,
                                                  void (*)(qemu_plugin_id_t, struct qemu_plugin_tb*));
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, void*), void*);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAXM 1024
#define MAXR 8192
static uint64_t total;
static char names[MAXM][24];
static uint64_t counts[MAXM];
static int nnames;
static uint64_t rstart[MAXR], rend[MAXR], rcount[MAXR];
static char rname[MAXR][160];
static int nranges;
static char out_path[512];

static uint64_t* counter_for(const char* disas) {
  char m[24]; int i = 0;
  while (disas[i] && disas[i] != ' ' && disas[i] != '\t' && i < 23) { m[i] = disas[i]; ++i; }
  m[i] = 0;
  for (int k = 0; k < nnames; ++k) if (!strcmp(names[k], m)) return &counts[k];
  if (nnames == MAXM) return &counts[MAXM - 1];
  strcpy(names[nnames], m); return &counts[nnames++];
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  uint64_t pc = qemu_plugin_tb_vaddr(tb);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
  for (int r = 0; r < nranges; ++r)
    if (pc >= rstart[r] && pc < rend[r]) {
      qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &rcount[r], n);
      break;
    }
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
    char* d = qemu_plugin_insn_disas(insn);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, counter_for(d ? d : "?"), 1);
    free(d);
  }
}

static void on_exit_cb(qemu_plugin_id_t id, void* p) {
  (void)id; (void)p;
  FILE* f = out_path[0] ? fopen(out_path, "w") : stderr;
  if (!f) return;
  fprintf(f, "total %llu\n", (unsigned long long)total);
  for (int k = 0; k < nnames; ++k) fprintf(f, "insn %s %llu\n", names[k], (unsigned long long)counts[k]);
  for (int r = 0; r < nranges; ++r) fprintf(f, "range %s %llu\n", rname[r], (unsigned long long)rcount[r]);
  if (f != stderr) fclose(f);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (!strncmp(argv[i], "out=", 4)) strncpy(out_path, argv[i] + 4, sizeof out_path - 1);
    if (!strncmp(argv[i], "ranges=", 7)) {
      FILE* f = fopen(argv[i] + 7, "r");
      unsigned long long s, e;
      while (f && nranges < MAXR && fscanf(f, "%llx %llx %159s", &s, &e, rname[nranges]) == 3) {
        rstart[nranges] = s; rend[nranges] = e; ++nranges;
      }
      if (f) fclose(f);
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
  qemu_plugin_register_atexit_cb(id, on_exit_cb, 0);
  return 0;
}
"""


@dataclass(frozen=True)
class Counts:
    """Instructions of a run: ``total``, per mnemonic (``mix``) and per named address range (``ranges``)."""

    total: int
    mix: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, int] = field(default_factory=dict)

    def minus(self, other: "Counts") -> "Counts":
        def diff(a: dict, b: dict) -> dict:
            out = {k: a.get(k, 0) - b.get(k, 0) for k in a}
            return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}

        return Counts(self.total - other.total, diff(self.mix, other.mix), diff(self.ranges, other.ranges))


def read_counts(path: Path) -> Counts:
    total, mix, ranges = 0, {}, {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(" ")
        if parts[0] == "total":
            total = int(parts[1])
        elif parts[0] == "insn":
            mix[" ".join(parts[1:-1])] = int(parts[-1])
        elif parts[0] == "range":
            ranges[parts[1]] = ranges.get(parts[1], 0) + int(parts[-1])
    return Counts(total, mix, ranges)


def run_tool(cmd: list[str], what: str, timeout_s: float = 600, cwd: Path | None = None) -> str:
    """Run ``cmd``; a failure is one line (the last line of its output)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what} did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise ToolchainError(f"{what} failed ({proc.returncode}): {lines[-1].strip() if lines else 'no output'}")
    return proc.stdout


def build_plugin(directory: Path) -> Path:
    """The plugin library (built with the host gcc on first use, in ``directory``)."""
    require(HOST_CC)
    directory.mkdir(parents=True, exist_ok=True)
    lib = directory / "libtvm_mp_insncount.so"
    if not lib.exists():  # built beside and renamed: a kill mid-build never leaves a partial plugin to reuse
        src = directory / "tvm_mp_insncount.c"
        write_atomic(src, PLUGIN_C)
        with atomic_path(lib) as tmp:
            run_tool([HOST_CC, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)], "building the qemu plugin")
    return lib


def counted(cmd: list[str], repeats_arg, directory: Path, ranges: Path | None = None, cpu: str = "max") -> Counts:
    """Instructions of one repetition of ``cmd`` under qemu-aarch64: the run with ``repeats_arg(2)`` appended
    minus the run with ``repeats_arg(1)``."""
    require(QEMU)
    plugin = build_plugin(directory)
    runs = []
    for reps in (1, 2):
        stats = directory / f"insn{reps}.txt"
        args = f"{plugin},out={stats}" + (f",ranges={ranges}" if ranges is not None else "")
        try:
            run_tool([QEMU, "-L", SYSROOT, "-cpu", cpu, "-plugin", args, *cmd, *repeats_arg(reps)],
                     "the counted qemu-aarch64 run")
        except ToolchainError as err:
            if "plugin" in str(err).lower():  # this qemu has no TCG plugin support (or cannot load ours)
                raise ToolchainError(f"{QEMU} cannot load tvm-mp's instruction-count plugin ({err}): install a "
                                     "qemu-aarch64 built with TCG plugins: apt-get install qemu-user (Debian 12 or "
                                     "later)") from None
            raise
        runs.append(read_counts(stats))
    return runs[1].minus(runs[0])


def symbol_ranges(binary: Path, names: list[str], out: Path) -> Path:
    """Write the address ranges of each kernel's functions in a static ``binary`` (``__tvm_ffi_<name>``, the
    ``<name>_compute_*`` bodies) as plugin ranges named by kernel."""
    require(CROSS_NM)
    text = run_tool([CROSS_NM, "-S", "--defined-only", str(binary)], "reading the kernels' symbols")
    by_length = sorted(names, key=len, reverse=True)
    lines = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[2] not in "tT":
            continue
        addr, size, sym = int(parts[0], 16), int(parts[1], 16), parts[3]
        base = sym[len("__tvm_ffi_"):] if sym.startswith("__tvm_ffi_") else sym
        kernel = next((n for n in by_length if base == n or base.startswith(n + "_compute_")), None)
        if kernel is not None and size:
            lines.append(f"{addr:x} {addr + size:x} {kernel}")
    out.write_text("\n".join(lines) + "\n")
    return out


# ---- a bare harness: calls into a TVM-built aarch64 shared library without the TVM runtime -----------------
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


def write_program(program, directory: Path, lib: Path) -> Path:
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



def build_harness(directory: Path) -> Path:
    """The aarch64 harness (built with the cross compiler on first use, in ``directory``)."""
    require(CROSS_CC)
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "harness"
    if not exe.exists():
        src = directory / "harness.c"
        write_atomic(src, HARNESS_C)
        with atomic_path(exe) as tmp:
            run_tool([CROSS_CC, "-O2", "-rdynamic", "-o", str(tmp), str(src), "-ldl"], "building the aarch64 harness")
    return exe


def count_kernel(lib: Path, name: str, inputs: list, output_shape, output_dtype, directory: Path,
                 cpu: str = "max") -> tuple[Counts, "np.ndarray"]:
    """``(counts, output)``: emulated instructions of one call of kernel ``name`` of the aarch64 shared library
    ``lib`` on ``inputs`` (NumPy arrays; a zeroed output of ``output_shape`` / ``output_dtype`` last), and the
    output it wrote."""
    from .program import Program

    require(QEMU, CROSS_CC)
    if not Path(SYSROOT).is_dir():
        raise ToolchainError(f"the aarch64 C library ({SYSROOT}) is missing: apt-get install libc6-dev-arm64-cross")
    prog = Program()
    ids = [prog.buffer(a.shape, a.dtype, a) for a in inputs]
    out = prog.buffer(output_shape, output_dtype)
    prog.call(name, ids + [out])
    prog.outputs = [out]
    directory.mkdir(parents=True, exist_ok=True)
    harness = build_harness(directory)
    program = write_program(prog, directory, lib)
    counts = counted([str(harness), str(program)], lambda reps: [str(reps)], directory, cpu=cpu)
    output = np.fromfile(directory / f"out{out}.bin", dtype=np.dtype(output_dtype)).reshape(output_shape)
    return counts, output
