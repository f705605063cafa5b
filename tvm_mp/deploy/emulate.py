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
        run_tool([QEMU, "-L", SYSROOT, "-cpu", cpu, "-plugin", args, *cmd, *repeats_arg(reps)],
                 "the counted qemu-aarch64 run")
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
