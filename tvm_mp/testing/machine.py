"""What machine a measurement ran on: the description every benchmark writes next to its figures.

``describe_machine()`` reads ``lscpu`` (CPU model, cores, threads per core, caches, hypervisor, the instruction-set
flags that matter for our kernels), the load average at the time (these are often shared machines) and the
versions of the software that produced the figures; ``machine_line()`` renders it as one markdown sentence.
Nothing here is cached: call it when a benchmark starts.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Mapping, Sequence

#: CPU flags our kernels use or could use (VNNI dot products, vector popcount, AVX-512 widths, half and bfloat16
#: conversions and arithmetic for the float formats).
FLAGS_OF_INTEREST = ("popcnt", "sse4_2", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_vpopcntdq", "avx512_bitalg", "avx512_bf16", "avx512fp16")
CACHES = ("L1d cache", "L2 cache", "L3 cache")


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def tool_version(command: Sequence[str]) -> str:
    """First line of ``command`` (e.g. ``["qemu-system-arm", "--version"]``), or ``"missing"``."""
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, check=True, timeout=30).stdout
        return out.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "missing"


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def describe_machine(packages: Sequence[str] = ("apache-tvm", "numpy"),
                     tools: Mapping[str, Sequence[str]] | None = None, tvm_runtime: bool = True) -> dict:
    """The machine as a JSON-able dict.

    ``packages``: distributions whose versions to record; ``tools``: name -> version command; ``tvm_runtime``: also
    record TVM's runtime thread count and the LLVM CPU name TVM sees (imports tvm).
    """
    info = _lscpu()
    flags = set(info.get("Flags", "").split())
    out: dict = {
        "cpu_model": info.get("Model name", platform.processor() or platform.machine()),
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "cores_per_socket": info.get("Core(s) per socket"),
        "threads_per_core": info.get("Thread(s) per core"),
        "caches": {k: info[k] for k in CACHES if k in info},
        "hypervisor": info.get("Hypervisor vendor"),
        "flags_of_interest": [f for f in FLAGS_OF_INTEREST if f in flags],
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in packages},
        "tools": {name: tool_version(cmd) for name, cmd in (tools or {}).items()},
    }
    try:
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        out["load_average"] = None
    if tvm_runtime:
        from .. import _tvm
        from ..targets import host_cpu

        out["tvm_threads"] = _tvm.runtime_threads()
        out["llvm_mcpu"] = host_cpu()
    return out


def machine_line(m: Mapping) -> str:
    """One markdown sentence: CPU, cores, caches, flags, software, load."""
    cores = f"{m.get('cores')} CPUs"
    if m.get("cores_per_socket"):
        cores += f", {m['cores_per_socket']} cores/socket"
    if m.get("threads_per_core"):
        cores += f", {m['threads_per_core']} thread(s)/core"
    parts = [f"{m.get('cpu_model', '?')} ({cores}{', hypervisor ' + m['hypervisor'] if m.get('hypervisor') else ''})"]
    if m.get("caches"):
        parts.append("caches " + ", ".join(f"{k.split()[0]} {v}" for k, v in m["caches"].items()))
    if m.get("flags_of_interest"):
        parts.append("flags " + " ".join(m["flags_of_interest"]))
    software = [f"Python {m.get('python')}"] + [f"{k} {v}" for k, v in m.get("packages", {}).items()]
    if "tvm_threads" in m:
        software.append(f"TVM runtime threads {m['tvm_threads']}")
    if m.get("llvm_mcpu"):
        software.append(f"LLVM mcpu `{m['llvm_mcpu']}`")
    software += [v for v in m.get("tools", {}).values()]
    parts.append("software: " + ", ".join(software))
    if m.get("load_average"):
        parts.append("load average at the start " + " / ".join(f"{x:.2f}" for x in m["load_average"])
                     + " (a shared machine: figures are medians of repeats)")
    return "Machine: " + "; ".join(parts) + "."
