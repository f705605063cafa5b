"""
Your own pretrained model and your own data
===========================================

The tutorials so far used the bundled digits CNN. Here is the path a user walks with a network of their own: a
real pretrained ONNX model (PaddleOCR's text-orientation classifier, 53 convolutions in MobileNetV3 style with
squeeze-excite and hard-sigmoid, shipped inside the ``rapidocr-onnxruntime`` package on PyPI), and a labelled set of
images from the task it was trained for. Replace the two marked lines with your file and your data.

What you will see: which layers tvm-mp quantizes and which ops stay in fp32, the fp32 and w8a8 accuracy on your
data, a check that the integer kernels equal the NumPy reference, and a plan chosen under a weight-memory budget,
with the report that says what each layer got.
"""

# %%
# Your model
# ----------
# ``load_onnx`` takes the path and the input shape you deploy at (batch 1 here). Everything TVM's ONNX importer
# accepts compiles: conv / depthwise conv / dense layers become integer kernels, every other op (here the
# hard-sigmoid and the squeeze-excite multiplies, the softmax) stays fp32 and runs as TVM builds it.
import time

import numpy as np
import onnxruntime

import tvm_mp
from tvm_mp import Budget, Precision, PrecisionPlan
from tvm_mp.testing import corpus

onnx_path = corpus.model("cls").path  # <- your .onnx file
shape = (1, 3, 48, 192)
mod = tvm_mp.load_onnx(onnx_path, shapes={"x": shape})
layers = tvm_mp.list_layers(mod)
print(f"{len(layers)} quantizable layers, {sum(layer.macs for layer in layers) / 1e6:.1f} M MACs; the first three:")
for layer in layers[:3]:
    print("  ", layer)


# %%
# Your data
# ---------
# A labelled set, split in three: a few images to calibrate the activation ranges, a set the search scores plans
# on, and a held-out set for the final figures. Here: rendered digit strings, every second one turned by 180
# degrees (label 1), as the classifier expects its input (RGB, normalized to [-1, 1]).
def labelled(n: int, seed: int):
    images, _ = corpus.text_images(n, shape, seed=seed, rotate=True)  # <- your images, preprocessed
    return images, np.arange(n) % 2  # <- your labels


x_calib, _ = labelled(16, seed=1)
x_search, y_search = labelled(48, seed=7)
x_held, y_held = labelled(100, seed=11)
calibration = [x_calib[i:i + 1] for i in range(len(x_calib))]


def top1(run, x, y) -> float:
    predictions = np.concatenate([run(x[i:i + 1]) for i in range(len(x))]).argmax(axis=1)
    return float(np.mean(predictions == y))


def accuracy_fn(model) -> float:
    """What the search maximizes: top-1 on the search split (``model.run`` is the built model or, while
    searching, the NumPy reference of the plan being scored)."""
    return top1(model.run, x_search, y_search)


# %%
# fp32 and w8a8 on your data
# --------------------------
# The fp32 baseline is the ONNX model as onnxruntime runs it; then tvm-mp at uniform w8a8. The integer layers of
# the built model equal the NumPy reference of the same integer arithmetic exactly (the fp32 parts to float
# tolerance). Where an fp32 op (here the hard-sigmoid and the squeeze-excite multiplies) feeds the next layer's
# quantizer, a last-bit difference between NumPy's and TVM's float code can move a value across a rounding
# boundary: one code of one activation changes, and the output moves by about a quantization step (on a Zen 4
# host, one of 20 images: 1.3e-3 in a probability). So the end-to-end check is: same class, outputs within 1e-2.
start = time.perf_counter()
session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
w8a8 = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(8, 8)), calibration=calibration)
print(f"fp32 (onnxruntime) top-1 {top1(lambda x: session.run(None, {'x': x})[0], x_held, y_held):.2f}, "
      f"w8a8 top-1 {top1(w8a8.run, x_held, y_held):.2f} on {len(y_held)} held-out images "
      f"(w8a8 compile {time.perf_counter() - start:.0f} s)")
built, reference = w8a8.run(x_held[:8]), w8a8.reference(x_held[:8])
np.testing.assert_array_equal(built.argmax(axis=1), reference.argmax(axis=1))
np.testing.assert_allclose(built, reference, atol=1e-2)
print(f"w8a8 weights: {w8a8.report.memory_kb:.1f} kB; the built model equals its reference on "
      f"{np.mean(built == reference):.0%} of the outputs, max difference {np.abs(built - reference).max():.1e}")
if w8a8.report.unquantizable:
    print("left in fp32 by tvm-mp:", ", ".join(f"{u.name} ({u.reason})" for u in w8a8.report.unquantizable))

# %%
# A plan under a weight-memory budget
# -----------------------------------
# A micro-controller has a fixed flash size. Ask for 70 % of the w8a8 weight memory: the search gives each layer
# its own bits (4-bit weights where the network tolerates them), scores candidate plans with ``accuracy_fn`` on
# the NumPy reference, and builds the best one. The report lists each layer's bits.
start = time.perf_counter()
small = tvm_mp.compile(mod, budget=Budget(memory_kb=0.7 * w8a8.report.memory_kb), calibration=calibration,
                       accuracy_fn=accuracy_fn)
print(f"budget compile: {time.perf_counter() - start:.0f} s; weights {small.report.memory_kb:.1f} kB "
      f"(w8a8: {w8a8.report.memory_kb:.1f} kB); top-1 held-out {top1(small.run, x_held, y_held):.2f}")
counts: dict[str, int] = {}
for precision in small.plan.precisions.values():
    counts[str(precision)] = counts.get(str(precision), 0) + 1
print("bits per layer:", ", ".join(f"{n} x {bits}" for bits, n in sorted(counts.items(), key=lambda kv: -kv[1])))
print(small.report)
