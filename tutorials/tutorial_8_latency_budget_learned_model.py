"""
Meet a latency budget with the learned cost model, verified by measurement
==========================================================================

On an x86-64 CPU (``target="host"``, the default), ``tvm_mp.compile`` prices plans with the whole-model latency
predictor shipped with tvm-mp: an XGBoost model of each layer's kernel *as it runs inside a built model*, plus the
fixed per-inference terms (quantize calls, other operators, the VM's own work). Energy is not learned: it comes
from the analytical CPU model and is labelled "modelled".

A latency budget is then checked where it matters, on the built model: ``compile`` times it and, if the budget is
missed, corrects its costs by what it measured and searches again. This tutorial compiles the bundled digits CNN
under a latency budget, prints predicted and measured latency, and times the result once more on its own.
"""

# %%
# The model, the data, and what uniform w8a8 costs
# ------------------------------------------------
import tvm_mp
from tvm_mp import Budget, Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path
from tvm_mp.search.budget import measure_in_model

mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
digits = load_digits_split()
calib = calibration_batches(2, 32)


def top1(model) -> float:
    return float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())


w8a8 = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(8, 8)), calibration=calib)
print("cost model:", w8a8.report.cost_model)
# ``measure_in_model`` times one inference of the built model's ``main`` the way the predictor's training data
# was timed (the VM's time evaluator; median of rounds, half their interquartile range as the noise).
w8a8_measured = measure_in_model(w8a8)
print(f"w8a8: predicted {w8a8.report.latency_ms:.4f} ms (of which fixed terms {w8a8.report.fixed_latency_ms:.4f} ms), "
      f"measured {w8a8_measured.latency_ms:.4f} ms +/- {w8a8_measured.noise_ms:.4f}")

# %%
# Compile under a latency budget
# ------------------------------
# 90 % of what w8a8 measured here. The search works on predicted whole-inference latency; the built model is then
# measured, and ``model.search`` keeps every round: the plan, its predicted and its measured latency. (A tighter
# budget on this 8-microsecond model can end on a plan with 1-bit activations and a much lower top-1: the compile
# then warns that the budget needs precisions the model does not tolerate.)
limit = round(0.9 * w8a8_measured.latency_ms, 6)
model = tvm_mp.compile(mod, budget=Budget(latency_ms=limit), calibration=calib, accuracy_fn=top1)
outcome = model.search
print(f"budget {limit:.4f} ms, cost model {outcome.cost_model}")
for k, r in enumerate(outcome.rounds, 1):
    print(f"round {k}: predicted {r.predicted_latency_ms:.4f} ms, measured {r.measured.latency_ms:.4f} ms "
          f"+/- {r.measured.noise_ms:.4f} (costs x{r.correction:.3g})")
print("met by measurement:", outcome.meets_budget_measured(), " plan:", model.plan.to_json())
print(f"top-1 on the test split: {model.report.accuracy:.3f} (w8a8 {top1(w8a8):.3f})")
assert outcome.meets_budget_measured()

# %%
# The report
# ----------
# Per-layer latency from the layer model, plus the fixed terms; the total is the whole inference.
print(model.report)

# %%
# Check it again, on its own
# --------------------------
# A second, independent timing of the returned model: within the budget, give or take the noise it reports.
again = measure_in_model(model, rounds=15)
print(f"predicted {model.report.latency_ms:.4f} ms, measured again {again.latency_ms:.4f} ms "
      f"+/- {again.noise_ms:.4f}, budget {limit:.4f} ms: {'met' if again.meets(limit) else 'missed'}")

# %%
# What the analytical model would have said
# -----------------------------------------
# The same plan priced by the analytical roofline (the default before the learned model): the sum of isolated
# kernels, several times the measured time here. A search on it would pick plans for the wrong reasons.
analytical = tvm_mp.compile(mod, plan=model.plan, calibration=calib, cost_model="analytical")
print(f"same plan: analytical {analytical.report.latency_ms:.4f} ms, learned {model.report.latency_ms:.4f} ms, "
      f"measured {again.latency_ms:.4f} ms")
