"""Virtual quantization for general-purpose MCUs: sub-byte weights on Cortex-M cores with no sub-byte hardware.

n-bit integer weights (1..8) are packed into 8/16/32-bit words (:mod:`.packing`) and unpacked with shifts and sign
extension inside generated C kernels (:mod:`.kernels`); whole quantized networks are emitted as C
(:mod:`.network`), cross-compiled with ``arm-none-eabi-gcc`` and run on an emulated Cortex-M board under
``qemu-system-arm`` with a semihosting harness (:mod:`.harness`, :mod:`.runner`). Results equal the NumPy
reference of :mod:`tvm_mp.quantize` bit for bit (:mod:`.verify`). See ``docs/mcu.md``.
"""

from .kernels import Dequantize, McuLayer, Requantize
from .network import McuNetwork, emit_network
from .packing import VqFormat
from .runner import (
    TARGETS,
    Firmware,
    McuRunError,
    McuTarget,
    QemuRun,
    ToolchainError,
    build_firmware,
    find_tool,
    run_on_qemu,
)
from .verify import McuResult, reference_outputs, run_layers, run_network

__all__ = [
    "TARGETS",
    "Dequantize",
    "Firmware",
    "McuLayer",
    "McuNetwork",
    "McuResult",
    "McuRunError",
    "McuTarget",
    "QemuRun",
    "Requantize",
    "ToolchainError",
    "VqFormat",
    "build_firmware",
    "emit_network",
    "find_tool",
    "reference_outputs",
    "run_layers",
    "run_network",
    "run_on_qemu",
]
