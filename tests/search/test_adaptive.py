import json

import numpy as np
import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.errors import Error, PlanError
from tvm_mp.search.adaptive import compile_adaptive
from tvm_mp.search.costs import BudgetError

NAMES = ["conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "dense_0"]
HIGH = PrecisionPlan({n: Precision(8, 8) for n in NAMES})
# on these tiny layers the packed 8-bit kernel is often the cheapest; 1-bit conv2d_0 and dense_0 are cheaper still
LOW = PrecisionPlan({"conv2d_0": Precision(1, 1), "conv2d_1": Precision(8, 8), "conv2d_2": Precision(8, 8),
                     "conv2d_3": Precision(8, 8), "dense_0": Precision(1, 1)})


@pytest.fixture(scope="module")
def adaptive(net, calib):
    return compile_adaptive(net, [HIGH, LOW], calibration=calib)


@pytest.mark.slow
def test_each_point_equals_its_own_standalone_compile(net, calib, adaptive):
    x = np.concatenate(calib)[:6]
    for plan in (HIGH, LOW):
        alone = tvm_mp.compile(net, plan=plan, calibration=calib)
        point = next(p for p in adaptive.points if p.plan == plan)
        np.testing.assert_array_equal(adaptive.run(x, point=point), alone.run(x))


def test_points_share_one_store_and_switch_at_run_time(adaptive, calib):
    store = adaptive.store
    # the layers both plans keep at w8a8 are stored once
    assert store.distinct_constants < store.total_constants and store.shared_bytes < store.separate_bytes
    low, high = adaptive.points  # sorted by predicted energy
    assert low.plan == LOW and high.plan == HIGH and low.energy_uj < high.energy_uj
    assert adaptive.select(energy_uj=high.energy_uj) == high
    assert adaptive.select(energy_uj=(low.energy_uj + high.energy_uj) / 2) == low
    x = calib[0][:2]
    np.testing.assert_array_equal(adaptive.run(x), adaptive.run(x, point=0))
    with pytest.raises(BudgetError, match="smallest available"):
        adaptive.select(energy_uj=low.energy_uj / 2)
    with pytest.raises(PlanError, match="positive"):
        adaptive.select(latency_ms=-1.0)


def test_points_must_set_every_layer(net, calib):
    with pytest.raises(PlanError, match="lacks"):
        compile_adaptive(net, [PrecisionPlan({"conv2d_0": Precision(4, 4)})], calibration=calib)


def test_export_writes_the_library_and_points_and_refuses_a_foreign_directory(adaptive, tmp_path):
    out = adaptive.export(tmp_path / "adaptive")
    assert sorted(p.name for p in out.iterdir()) == ["model.so", "points.json"]
    points = json.loads((out / "points.json").read_text())
    assert points == adaptive.to_dict()
    adaptive.export(out)  # a previous export is replaced
    assert sorted(p.name for p in out.iterdir()) == ["model.so", "points.json"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(Error, match="not a tvm-mp export"):
        adaptive.export(foreign)
    assert (foreign / "notes.txt").read_text() == "keep" and not (foreign / "model.so").exists()
