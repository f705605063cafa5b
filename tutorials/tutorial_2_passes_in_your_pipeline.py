"""
Use tvm-mp's passes inside your own TVM pipeline
================================================

tvm-mp's passes are ordinary ``tvm.transform.Pass`` objects. If you already have a Relax flow, you can put them
into your own ``tvm.transform.Sequential`` next to TVM's passes and build with ``tvm.compile`` as usual.
This tutorial quantizes the first two layers of the bundled digits CNN (w4a4 and w2a4: 2-bit weights),
leaves the others in fp32, builds with TVM directly and checks the result against tvm-mp's NumPy reference.
"""

# %%
# Import a model
# --------------
# ``load_onnx`` fixes the input shapes, folds the exported graph (onnxslim) and imports it with TVM's ONNX
# frontend. A Relax module you already have works the same way: raw ``relax.frontend.onnx.from_onnx`` output, a
# ``relax.frontend.nn`` module from ``export_tvm`` with its params bound, or TVMScript with constant weights;
# the ``Canonicalize`` pass (or ``tvm_mp.canonicalize(mod)``) brings it into the form the other passes read.
import warnings

import numpy as np
import tvm

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path
from tvm_mp.passes import AnnotatePrecision, Canonicalize, QuantizeWeights, RewriteMixedPrecision, ScheduleRemainingOps
from tvm_mp.quantize.calibrate import calibrate
from tvm_mp.quantize.interpreter import Interpreter

mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
print([layer.name for layer in tvm_mp.list_layers(mod)])

# %%
# Calibrate and choose precisions
# -------------------------------
# Activation ranges come from a few batches of representative inputs. The plan names layers; layers left out
# stay in fp32 (AnnotatePrecision warns and names them).
ranges = calibrate(mod, calibration_batches(4, 32), method="mse")
plan = PrecisionPlan({"conv2d_0": Precision(w_bits=4, a_bits=4), "conv2d_1": Precision(w_bits=2, a_bits=4)})

# %%
# Your pipeline, with tvm-mp's passes in it
# -----------------------------------------
# Canonicalize comes first (a no-op here: load_onnx's output is canonical already; on a raw module it renames
# the entry to ``main`` and folds batch_norm and transposed weights). AnnotatePrecision wraps each planned layer in a
# function carrying its precision; QuantizeWeights replaces the
# weights by their integers and scales; RewriteMixedPrecision lowers the layers to integer kernels (here
# packed kernels here: bit-serial is chosen automatically only when w_bits * a_bits <= 4) with requantization
# between integer layers; ScheduleRemainingOps gives the ops left in fp32 (here the last layers and the
# activations between them) a CPU schedule. Run inside the target you build for: the kernels and the schedules
# are that target's (without a target, the kernels keep a plain layout and the fp32 ops are left to TVM).
target = tvm.target.Target({"kind": "llvm"})
pipeline = tvm.transform.Sequential(
    [
        Canonicalize(),
        AnnotatePrecision(plan, ranges),
        QuantizeWeights(),
        tvm.relax.transform.FoldConstant(),  # any of your own passes can sit in between
        RewriteMixedPrecision(),
        ScheduleRemainingOps(),
    ]
)
with warnings.catch_warnings(record=True) as caught, target:
    warnings.simplefilter("always")
    lowered = pipeline(mod)
print("AnnotatePrecision warned:", *(str(w.message) for w in caught))
kernels = sorted(gv.name_hint for gv in lowered.get_global_vars() if gv.name_hint.startswith("tvm_mp_"))
print(kernels)

# %%
# Build and run with TVM itself
# -----------------------------
executable = tvm.compile(lowered, target)
vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
digits = load_digits_split()
logits = np.concatenate([vm["main"](tvm.runtime.tensor(x[None], tvm.cpu())).numpy() for x in digits.x_test])
accuracy = float((logits.argmax(axis=1) == digits.y_test).mean())
print(f"top-1 with conv2d_0 at w4a4 and conv2d_1 at w2a4: {accuracy:.4f}")

# %%
# Check against the NumPy reference
# ---------------------------------
# The reference interprets the annotated, weight-quantized module with the same integer arithmetic, without TVM.
# The integer layers match exactly; the fp32 layers after them (TVM's conv vs NumPy's) to float tolerance.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the same fp32 layers as above
    quantized = tvm.transform.Sequential([AnnotatePrecision(plan, ranges), QuantizeWeights()])(mod)
reference = Interpreter(quantized, quantized=True).run([digits.x_test])
assert np.allclose(logits, reference, rtol=1e-5, atol=1e-5)
assert kernels == ["tvm_mp_conv2d_0_kernel", "tvm_mp_conv2d_0_quantize", "tvm_mp_conv2d_1_kernel"]
assert accuracy > 0.9
print("matches the NumPy reference")
