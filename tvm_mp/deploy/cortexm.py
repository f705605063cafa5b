"""The Cortex-M backend of the compile driver: the quantized module becomes C (:func:`tvm_mp.mcu.emit_network`),
measured on the emulated board, and exported as a C bundle.

:func:`measure` builds the network into a firmware with ``arm-none-eabi-gcc``, runs it once under
``qemu-system-arm`` on one input (bit-exact check against the NumPy reference included) and returns the
figures the report carries: code size of the network's functions, constant bytes (weights and per-channel
parameters), peak activation bytes (the static arena, planned first-fit over tensor lifetimes), their sum as
RAM, and the instructions one inference executes ("emulated instructions": a count, not a time).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .._files import write_atomic
from ..errors import CompileError
from ..mcu.network import McuNetwork, emit_network
from ..mcu.runner import TOOL_PACKAGES

README = """\
tvm-mp Cortex-M bundle: {name}
==============================

The compiled network as portable C for a Cortex-M ({cpu}): virtual-quantization kernels (sub-byte weights packed
in 32-bit words), integer requantization, float32 steps where the plan leaves float edges.

Files
  net.c    every step as one function, the constants (const: flash), one static arena of {arena} bytes
  net.h    void net_run(const float *in, {out_ctype} *out);  input {in_shape} float32, output {out_shape}

Add both files to your firmware and build with the same arithmetic flags as tvm-mp's check:
  arm-none-eabi-gcc {cflags} -O2 -ffp-contract=off -fno-fast-math -c net.c
(-ffp-contract=off: no fused multiply-add, so each float operation rounds once, as in the NumPy reference.)

Figures measured by tvm-mp under qemu-system-arm ({machine}): see ../report.txt.
"""


def _sample(calibration, shape: tuple[int, ...]) -> np.ndarray:
    """One input for the counted run: the first calibration sample when it can be read again, else zeros."""
    if isinstance(calibration, (list, tuple)) and calibration:
        first = calibration[0]
        if isinstance(first, dict) and len(first) == 1:
            first = next(iter(first.values()))
        arr = np.asarray(first, dtype=np.float32)
        if arr.size >= int(np.prod(shape)):
            return arr.reshape(-1)[: int(np.prod(shape))].reshape(shape)
    return np.zeros(shape, dtype=np.float32)


def measure(quantized, target_name: str, calibration=None) -> tuple[McuNetwork, dict]:
    """``(network, deployment figures)`` of the quantized module on the Cortex-M ``target_name``.

    Without ``arm-none-eabi-gcc`` / ``qemu-system-arm`` the figures that need them are None (a warning names the
    Debian packages); an unsupported op raises a one-line ``UnsupportedError`` (from ``emit_network``).
    """
    from ..mcu.runner import TARGETS
    from ..mcu.verify import run_network

    network = emit_network(quantized)
    params = sum(layer.param_bytes for layer in network.layers)
    figures = {"target": target_name, "code_bytes": None, "weight_bytes": network.weight_bytes + params,
               "activation_bytes": network.arena_bytes, "ram_bytes": network.weight_bytes + params +
               network.arena_bytes, "instructions": None,
               "instructions_basis": f"emulated instructions (qemu-system-arm {TARGETS[target_name].machine})"}
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        packages = ", ".join(TOOL_PACKAGES[t] for t in missing)
        warnings.warn(f"no code size or instruction count in the report: {', '.join(missing)} not found "
                      f"(apt-get install {packages})", stacklevel=3)
        return network, figures
    x = _sample(calibration, network.input_shape)
    with tempfile.TemporaryDirectory(prefix="tvm_mp_cortexm_") as tmp:
        result = run_network(quantized, [x], target=target_name, workdir=Path(tmp), count_instructions=True)
    if not result.ok:
        raise CompileError(f"the {target_name} C differs from the NumPy reference under qemu-system-arm: "
                           f"{'; '.join(result.failures())[:300]}")
    fns = [s.fn for s in network.steps] + ["net_run"]
    regions = result.run.region_instructions(fns[:-1], parents=("net_run", "main"))
    symbols = result.firmware.symbols
    figures["code_bytes"] = int(sum(symbols.get(f, 0) for f in fns))
    figures["instructions"] = int(sum(regions.get(f, 0) for f in fns))
    return network, figures


def write_bundle(model, directory: str | Path) -> Path:
    """Write ``net.c``, ``net.h`` and ``README.txt`` of ``model`` (a ``CompiledModel`` for a Cortex-M target)."""
    from ..mcu.runner import TARGETS

    network = getattr(model, "network", None) or emit_network(model.quantized_module)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    board = TARGETS[model.target.name]
    write_atomic(out / "net.c", '#include "net.h"\n' + network.c_source())  # each file replaced whole
    guard = "#ifndef TVM_MP_NET_H_\n#define TVM_MP_NET_H_\n#include <stdint.h>\n"
    write_atomic(out / "net.h", guard + network.declaration() + "#endif\n")
    write_atomic(out / "README.txt", README.format(
        name=model.target.name, cpu=board.cpu, arena=network.arena_bytes, out_ctype=network.output_ctype,
        in_shape=network.input_shape, out_shape=network.output_shape, cflags=" ".join(board.cflags),
        machine=board.machine))
    return out
