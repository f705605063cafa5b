import numpy as np
import pytest

from tvm_mp import Budget, Precision
from tvm_mp.errors import CalibrationError, PlanError
from tvm_mp.search.annealing import AnnealConfig
from tvm_mp.search.budget import compile_with_budget
from tvm_mp.search.costs import BudgetError
from tvm_mp.targets import parse

OPTIONS = [Precision(1, 1), Precision(2, 2), Precision(4, 4), Precision(8, 8)]


@pytest.mark.slow
def test_small_net_under_a_memory_budget(net, calib):
    budget = Budget(memory_kb=0.3)
    cm = compile_with_budget(net, budget, calibration=calib, options=OPTIONS, seed=0,
                             config=AnnealConfig(steps=100, restarts=0, max_evaluations=30, progress=False))
    out = cm.search
    assert out.meets_budget() and out.predicted["memory_kb"] <= 0.3
    assert cm.report.memory_kb == pytest.approx(out.predicted["memory_kb"])
    assert all(r.energy_uj is not None and r.latency_ms is not None for r in cm.report.layers)
    assert set(cm.plan) == {"conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "dense_0"}
    assert out.metric == "agreement" and 0.0 <= out.search_score <= 1.0
    x = calib[0]
    np.testing.assert_allclose(cm.run(x), cm.reference(x), rtol=1e-5, atol=1e-4)
    assert out.to_dict()["meets_budget"] is True


def test_inputs_are_checked(net, calib):
    with pytest.raises(CalibrationError, match="calibration"):
        compile_with_budget(net, Budget(energy_uj=1.0))
    with pytest.raises(PlanError, match="Budget"):
        compile_with_budget(net, {"energy_uj": 1.0}, calibration=calib)
    with pytest.raises(BudgetError, match="smallest achievable"):
        compile_with_budget(net, Budget(memory_kb=0.01), calibration=calib, options=OPTIONS)
    assert (parse("host").cost_key == "llvm"
            and parse({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}).cost_key == "aarch64")
