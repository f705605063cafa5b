"""Build firmware with ``arm-none-eabi-gcc`` and run it on an emulated Cortex-M board with ``qemu-system-arm``.

Instruction counting
    Debian's ``qemu-system-arm`` (7.2) is built with TCG plugin support but ships no plugin (no ``libinsn.so``), so
    the count comes from QEMU's own logs: ``-d in_asm,exec,nochain``. ``in_asm`` prints the guest instructions of
    every translation block (TB) when it is translated; ``exec`` prints one ``Trace`` line, with the TB's guest pc
    and the name of the ELF symbol it is in, each time a TB runs; ``nochain`` stops QEMU from jumping between TBs
    without returning to the loop that logs. The dynamic instruction count is the sum, over executed TBs, of the
    number of instructions in the TB (the firmware takes no interrupt and no fault, so every TB runs to its end;
    the semihosting ``BKPT`` that ends the program is counted). Counts are exact and deterministic (the same firmware
    gives the same number on every run); they are per symbol too, because the trace names the function.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Error, ToolchainError
from .harness import SEMIHOST_C, STARTUP_C, linker_script


class McuRunError(Error):
    """The firmware did not run to its end under the emulator (hang, fault, timeout)."""


#: Debian package that provides each tool.
TOOL_PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi (and libnewlib-arm-none-eabi)",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}


def find_tool(name: str) -> str:
    """Absolute path of ``name`` on PATH, or a one-line error naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        raise ToolchainError(f"{name} not found on PATH: install the Debian package {package} "
                             "(apt-get install; listed in .ci/apt-packages.txt)")
    return path


@dataclass(frozen=True)
class McuTarget:
    """An emulated Cortex-M board: QEMU machine, CPU, compiler flags and memory map."""

    name: str
    machine: str
    cpu: str
    cflags: tuple[str, ...]
    flash_origin: int = 0x00000000
    flash_bytes: int = 4 << 20
    ram_origin: int = 0x20000000
    ram_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if self.flash_bytes <= 0 or self.ram_bytes <= 0:
            raise ToolchainError(f"target {self.name}: memory sizes must be positive")


#: Boards QEMU emulates. MPS2 AN385 (Cortex-M3, no FPU: float in software) is the default; AN386 is a
#: Cortex-M4 with a single-precision FPU, AN500 a Cortex-M7 (built for its single-precision FPU). All three map
#: 4 MB of SSRAM at 0x0 (code) and 4 MB at 0x20000000 (data).
TARGETS = {
    "cortex-m3": McuTarget("cortex-m3", "mps2-an385", "cortex-m3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft")),
    "cortex-m4": McuTarget("cortex-m4", "mps2-an386", "cortex-m4",
                           ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")),
    "cortex-m7": McuTarget("cortex-m7", "mps2-an500", "cortex-m7",
                           ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16")),
}

#: Flags of every build: no FMA contraction (each float op rounds once, like NumPy), no fast-math, no libc startup.
COMMON_CFLAGS = ("-std=c11", "-ffp-contract=off", "-fno-fast-math", "-ffunction-sections", "-fdata-sections",
                 "-Wall", "-Wno-unused-function", "-nostartfiles", "-nostdlib")


def get_target(target: str | McuTarget) -> McuTarget:
    if isinstance(target, McuTarget):
        return target
    if target not in TARGETS:
        raise ToolchainError(f"unknown MCU target {target!r}: choose one of {sorted(TARGETS)}")
    return TARGETS[target]


@dataclass(frozen=True)
class Firmware:
    """A linked ELF and its sizes: ``sections`` (bytes per output section) and ``symbols`` (bytes per symbol)."""

    elf: Path
    target: McuTarget
    sections: dict = field(default_factory=dict)
    symbols: dict = field(default_factory=dict)

    @property
    def text_bytes(self) -> int:
        """Machine code in flash (the ``.text`` section: vector table, kernels, harness, libgcc/newlib parts)."""
        return int(self.sections.get(".text", 0))

    @property
    def rodata_bytes(self) -> int:
        """Constants in flash (weights, per-channel parameters, embedded inputs and expected outputs)."""
        return int(self.sections.get(".rodata", 0))


def build_firmware(sources: dict[str, str], workdir: str | Path | None = None, target: str | McuTarget = "cortex-m3",
                   opt: str = "-O2", timeout_s: float = 300.0) -> Firmware:
    """Compile and link ``sources`` (file name -> C text, one of them with ``main``) with the harness runtime."""
    tgt = get_target(target)
    gcc = find_tool("arm-none-eabi-gcc")
    out = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tvm_mp_mcu_"))
    out.mkdir(parents=True, exist_ok=True)
    files = {"vq_startup.c": STARTUP_C, "vq_semihost.c": SEMIHOST_C, **sources}
    for name, text in files.items():
        (out / name).write_text(text)
    (out / "vq_link.ld").write_text(linker_script(tgt.flash_origin, tgt.flash_bytes, tgt.ram_origin, tgt.ram_bytes))
    elf = out / "firmware.elf"
    cmd = [gcc, *tgt.cflags, opt, *COMMON_CFLAGS, "-T", str(out / "vq_link.ld"),
           *[str(out / n) for n in files if n.endswith(".c")], "-o", str(elf),
           "-Wl,--gc-sections", "-Wl,--start-group", "-lc", "-lm", "-lgcc", "-Wl,--end-group"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"arm-none-eabi-gcc did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
        raise ToolchainError(f"arm-none-eabi-gcc failed ({out}): {first.strip()}")
    (out / "build.log").write_text(" ".join(cmd) + "\n" + proc.stderr)
    return Firmware(elf, tgt, section_sizes(elf), symbol_sizes(elf))


def section_sizes(elf: str | Path) -> dict[str, int]:
    """Bytes per section, from ``arm-none-eabi-size -A``."""
    text = subprocess.run([find_tool("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    sizes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def symbol_sizes(elf: str | Path) -> dict[str, int]:
    """Bytes per symbol (functions and objects), from ``arm-none-eabi-nm -S``."""
    text = subprocess.run([find_tool("arm-none-eabi-nm"), "-S", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = sizes.get(parts[3], 0) + int(parts[1], 16)
    return sizes


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    elements: int = 0
    mismatches: int = 0
    first_index: int = -1
    got: str = ""
    want: str = ""


@dataclass(frozen=True)
class QemuRun:
    """Result of one emulator run: exit status, semihosting text, and instruction counts when asked for.

    ``trace_runs``: consecutive executed translation blocks grouped by ELF symbol, ``((symbol, instructions), ...)``
    in execution order; ``instructions`` their total.
    """

    exit_status: int
    output: str
    instructions: int | None = None
    trace_runs: tuple = ()

    @property
    def checks(self) -> dict[str, CheckResult]:
        out = {}
        for line in self.output.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "CASE":
                if parts[2] == "OK":
                    out[parts[1]] = CheckResult(parts[1], True, int(parts[3]))
                elif parts[2] == "FAIL" and len(parts) == 7:
                    out[parts[1]] = CheckResult(parts[1], False, 0, int(parts[3]), int(parts[4]), parts[5], parts[6])
        return out

    @property
    def dumps(self) -> dict[str, bytes]:
        """Raw output bytes of each check run with ``dump=True``."""
        chunks: dict[str, list] = {}
        for line in self.output.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "DUMP":
                chunks.setdefault(parts[1], []).append((int(parts[2]), bytes.fromhex(parts[3])))
        return {k: b"".join(c for _, c in sorted(v)) for k, v in chunks.items()}

    @property
    def done(self) -> bool:
        return any(line.startswith("DONE ") for line in self.output.splitlines())

    def symbol_instructions(self) -> Counter:
        counts: Counter = Counter()
        for sym, n in self.trace_runs:
            counts[sym] += n
        return counts

    def region_instructions(self, regions, parents=("main",)) -> Counter:
        """Instructions per region: a symbol in ``regions`` opens its region, a symbol in ``parents`` closes it;
        anything run in between (library helpers a kernel calls, e.g. soft-float) counts for the open region."""
        regions, parents = set(regions), set(parents)
        counts: Counter = Counter()
        current = None
        for sym, n in self.trace_runs:
            if sym in regions:
                current = sym
            elif sym in parents:
                current = None
            counts[current if current is not None else sym] += n
        return counts


_TRACE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
_INSN = re.compile(r"^0x([0-9a-f]+):")


class ExecLogCounter:
    """Counts instructions from the lines of a ``-d in_asm,exec,nochain`` log (see the module docstring)."""

    def __init__(self) -> None:
        self.total = 0
        self.runs: list = []
        self._tb_insns: dict[int, int] = {}
        self._seen: dict[str, tuple[int, str]] = {}  # exec line -> (instructions, symbol); same TB, same line
        self._block_pc: int | None = None
        self._block_n = 0
        self._sym: str | None = None
        self._n = 0

    def feed(self, line: str) -> None:
        hit = self._seen.get(line)
        if hit is None:
            if line.startswith("Trace"):
                hit = self._new_trace(line)
            else:
                self._asm(line)
                return
        n, sym = hit
        self.total += n
        if sym == self._sym:
            self._n += n
        else:
            if self._sym is not None:
                self.runs.append((self._sym, self._n))
            self._sym, self._n = sym, n

    def _new_trace(self, line: str) -> tuple[int, str]:
        if self._block_pc is not None:  # a block was just translated: it is the one that runs now
            self._tb_insns[self._block_pc] = self._block_n
            self._block_pc = None
        m = _TRACE.match(line)
        if m is None:
            raise McuRunError(f"unexpected QEMU exec log line: {line.strip()[:120]}")
        pc = int(m.group(1), 16)
        n = self._tb_insns.get(pc)
        if n is None:
            raise McuRunError(f"QEMU's exec log runs a block at 0x{pc:08x} it never translated: cannot count "
                              "instructions")
        hit = (n, line.rsplit("]", 1)[1].strip())
        self._seen[line] = hit
        return hit

    def _asm(self, line: str) -> None:
        if line.startswith("IN:"):
            self._block_pc, self._block_n = None, 0
            self._seen.clear()  # a retranslation may reuse a host address: forget cached lines
        elif line.startswith("0x"):
            m = _INSN.match(line)
            if m is not None:
                if self._block_pc is None:
                    self._block_pc = int(m.group(1), 16)
                self._block_n += 1

    def result(self) -> tuple[int, tuple]:
        runs = list(self.runs)
        if self._sym is not None:
            runs.append((self._sym, self._n))
        return self.total, tuple(runs)


def parse_exec_log(path: str | Path) -> tuple[int, tuple]:
    """``(instructions, trace_runs)`` from a ``-d in_asm,exec,nochain`` log file."""
    counter = ExecLogCounter()
    with open(path, "r", errors="replace") as f:
        for line in f:
            counter.feed(line)
    return counter.result()


def _release_reader(fifo: Path) -> None:
    """Unblock a reader still waiting to open ``fifo`` (QEMU exited before opening its log): it then sees EOF."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader waiting: nothing to release
        return
    os.close(fd)


def run_on_qemu(firmware: Firmware | str | Path, timeout_s: float = 60.0, count_instructions: bool = False,
                target: str | McuTarget | None = None) -> QemuRun:
    """Boot ``firmware`` on its board under ``qemu-system-arm`` (semihosting on), wait for it to exit.

    Raises :class:`McuRunError` when it does not end within ``timeout_s`` or ends without printing ``DONE``.
    """
    qemu = find_tool("qemu-system-arm")
    if isinstance(firmware, Firmware):
        elf, tgt = firmware.elf, firmware.target
    else:
        elf, tgt = Path(firmware), get_target(target or "cortex-m3")
    if target is not None:
        tgt = get_target(target)
    cmd = [qemu, "-M", tgt.machine, "-cpu", tgt.cpu, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    instructions, runs = None, ()
    with tempfile.TemporaryDirectory(prefix="tvm_mp_qemu_") as tmp:
        if count_instructions:
            # stream the (large) log through a pipe into the counter instead of writing it to disk
            fifo = Path(tmp) / "exec.log"
            os.mkfifo(fifo)
            cmd += ["-d", "in_asm,exec,nochain", "-D", str(fifo)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        counter = ExecLogCounter() if count_instructions else None
        failure: list = []

        def consume() -> None:
            try:
                with open(fifo, "r", errors="replace") as f:
                    for line in f:
                        counter.feed(line)
            except BaseException as err:  # reported after the run
                failure.append(err)
                proc.kill()

        reader = threading.Thread(target=consume, daemon=True) if count_instructions else None
        if reader is not None:
            reader.start()
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            if reader is not None:
                _release_reader(fifo)
                reader.join(timeout=10)
            raise McuRunError(f"qemu-system-arm did not finish within {timeout_s:.0f} s: the firmware hangs, or "
                              "raise timeout_s") from None
        if reader is not None:
            if proc.returncode is not None:
                _release_reader(fifo)
            reader.join(timeout=max(timeout_s, 10))
            if failure:
                raise failure[0]
            instructions, runs = counter.result()
        # semihosting console output goes to stderr
        text = err + out
    status = proc.returncode
    if status == 126:
        raise McuRunError(f"the firmware took a fault (hard fault / bus error) on {tgt.machine}")
    result = QemuRun(status, text, instructions, runs)
    if not result.done:
        tail = text.strip().splitlines()[-1:] or ["(no output)"]
        raise McuRunError(f"the firmware ended (status {status}) without finishing its checks: {tail[0][:200]}")
    return result
