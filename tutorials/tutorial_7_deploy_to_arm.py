"""
Deploy to an ARM board and a micro-controller
=============================================

The same ``tvm_mp.compile`` call that builds for this machine builds for the boards users ship to:

* ``target="aarch64"`` (ARM Linux boards: Raspberry Pi 4/5, Jetson, i.MX 8, ...): ``export`` writes ``model.so``
  for a TVM runtime on the board **and** a standalone C bundle that needs no TVM runtime at all;
* ``target="cortex-m4"`` / ``"cortex-m7"`` (micro-controllers): a C bundle of integer and virtual-quantization
  kernels, with code size, RAM and instructions per inference measured on an emulated board.

Here the bundles are built with the cross compilers and run under QEMU, the way the tests check them. On a real
board, copy the bundle and run ``make CC=gcc`` there (see its ``README.txt``). The cross compilers and emulators are
Debian packages (``gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user`` and ``gcc-arm-none-eabi
libnewlib-arm-none-eabi qemu-system-arm``); without them the steps that need them say so and are skipped.
"""

# %%
# Compile for aarch64
# -------------------
# A mixed plan for the bundled digits CNN: 8-bit first and last layers, 4- and 2-bit weights in between.
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path

mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
names = [layer.name for layer in tvm_mp.list_layers(mod)]
plan = PrecisionPlan({n: Precision(w, a) for n, (w, a) in zip(names, [(8, 8), (4, 4), (2, 4), (8, 8)])})
model = tvm_mp.compile(mod, plan=plan, calibration=calibration_batches(4, 32), target="aarch64")
print(model.report.target)

# %%
# This machine is x86-64, so the aarch64 model cannot run here (``run`` refuses with one line), but its NumPy
# reference can: the integer layers of the built model must equal it bit for bit on the board.
digits = load_digits_split()
x = digits.x_test[:1]
expected = model.reference(x)
try:
    model.run(x)
except tvm_mp.Error as err:
    print("run here:", err)

# %%
# Export: ``model.so`` and the standalone bundle
# ----------------------------------------------
# ``model.so`` is cross-linked with ``aarch64-linux-gnu-gcc``; the bundle is written first and needs no linker.
out = Path(tempfile.mkdtemp(prefix="tvm_mp_arm_"))
try:
    model.export(out)
except tvm_mp.Error as err:  # no cross compiler on this machine: the message names the Debian package
    print("export:", err)
bundle = out / "bundle"
print(sorted(p.name for p in bundle.iterdir()))
print((bundle / "tvm_mp_model.h").read_text())

# %%
# Build the bundle and run it under qemu-aarch64
# ----------------------------------------------
# The bundle's ``Makefile`` links a small demo program (``tvm_mp_demo input.bin output.bin``: raw float32 in and
# out) statically; ``qemu-aarch64`` runs it as the board would.
tools = shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")
if tools:
    subprocess.run(["make", "-s", "-C", str(bundle)], check=True)
    np.ascontiguousarray(x, dtype=np.float32).tofile(bundle / "input.bin")
    subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(bundle / "tvm_mp_demo"),
                    str(bundle / "input.bin"), str(bundle / "output.bin")], check=True)
    on_board = np.fromfile(bundle / "output.bin", dtype=np.float32).reshape(expected.shape)
    print("bundle output equals the reference bit for bit:", np.array_equal(on_board, expected))
    assert np.array_equal(on_board, expected)
else:
    print("skipped: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user")

# %%
# A Cortex-M4 micro-controller
# ----------------------------
# The same plan for ``target="cortex-m4"``: no TVM build; the driver quantizes, then writes C (sub-byte weights
# as virtual-quantization kernels). The report gives what matters on an MCU: code size, RAM (weights + peak
# activations from the arena planner) and instructions per inference, counted on an emulated ``mps2-an386``
# board (exact instruction counts, not cycles).
mcu = tvm_mp.compile(mod, plan=plan, calibration=calibration_batches(4, 32), target="cortex-m4")
for key in ("code_bytes", "weight_bytes", "activation_bytes", "ram_bytes", "instructions"):
    print(f"{key:>16}: {mcu.report.deployment.get(key)}")
mcu_out = Path(tempfile.mkdtemp(prefix="tvm_mp_mcu_"))
mcu.export(mcu_out)
print(sorted(p.name for p in (mcu_out / "bundle").iterdir()))

# %%
# The command line does the same: ``tvm-mp compile model.onnx --shape input=1,1,8,8 --plan w4a8 --calibration
# digits --target aarch64 -o out/`` (add ``--emulate`` to count instructions under qemu-aarch64), or
# ``--target cortex-m4``. See the ARM and MCU design notes for the kernels and the bundle's layout.
shutil.rmtree(out)
shutil.rmtree(mcu_out)
