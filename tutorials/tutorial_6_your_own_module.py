"""
Start from a Relax module you already have
==========================================

You may not have an ONNX file for tvm-mp's ``load_onnx``: your flow already holds a ``tvm.IRModule``, from TVM's
ONNX frontend, from a ``relax.frontend.nn`` model, or written in TVMScript. ``tvm_mp.compile``,
``tvm_mp.list_layers`` and the passes take such modules as they are: the compile driver canonicalizes them first
(the entry function becomes ``main``, batch norms are decomposed, transposed constant weights are folded).
"""

# %%
# TVM's own ONNX frontend
# -----------------------
# The bundled digits CNN, imported the way a TVM user does it, without ``load_onnx``: the weights stay constants
# (``keep_params_in_input=False``), batch norms and ``permute_dims`` of dense weights are left as TVM emits them.
import numpy as np
import onnx
import tvm
from tvm.relax.frontend import nn
from tvm.relax.frontend.onnx import from_onnx

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path

raw = from_onnx(onnx.load(str(digits_cnn_path())), shape_dict={"input": [1, 1, 8, 8]}, keep_params_in_input=False)
for layer in tvm_mp.list_layers(raw):
    print(layer)

# %%
# Compile it under a plan and check it
# ------------------------------------
# The same call as for a ``load_onnx`` module. The target defaults to this machine with its CPU features.
digits = load_digits_split()
model = tvm_mp.compile(raw, plan=PrecisionPlan.uniform(raw, Precision(4, 8)), calibration=calibration_batches(4, 32))
top1 = float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())
print(f"w4a8 top-1 on {len(digits.y_test)} held-out digits: {top1:.4f}")
assert np.array_equal(model.run(digits.x_test[:16]), model.reference(digits.x_test[:16]))
print(model.report)


# %%
# A ``relax.frontend.nn`` model
# -----------------------------
# ``export_tvm`` returns the module and its parameters; tvm-mp quantizes constant weights, so bind them first
# (``relax.transform.BindParams``). An unbound weight is refused with a one-line error that says so.
class TinyNet(nn.Module):
    def __init__(self):
        self.conv = nn.Conv2D(1, 8, kernel_size=3, padding=1, bias=True)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        y = nn.op.relu(self.conv(x))
        return self.fc(nn.op.reshape(y, [1, 8 * 8 * 8]))


exported, params = TinyNet().export_tvm(spec={"forward": {"x": nn.spec.Tensor([1, 1, 8, 8], "float32")}})
rng = np.random.default_rng(0)
values = {name: rng.normal(0, 0.2, [int(d) for d in p.shape]).astype("float32") for name, p in params}
bound = tvm.relax.transform.BindParams("forward", {name: tvm.runtime.tensor(v) for name, v in values.items()})(exported)
print([layer.name for layer in tvm_mp.list_layers(bound)])
tiny = tvm_mp.compile(bound, plan=PrecisionPlan.uniform(bound, Precision(8, 8)),
                      calibration=[rng.normal(0, 1, (1, 1, 8, 8)).astype("float32") for _ in range(4)])
x = rng.normal(0, 1, (1, 1, 8, 8)).astype("float32")
assert np.array_equal(tiny.run(x), tiny.reference(x))
print("nn.Module compiled at w8a8; output equals the NumPy reference")
