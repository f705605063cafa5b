"""report.md of an artifact directory: the conv / matmul ops tvm-mp cannot quantize get their own section."""

import json

from tvm_mp.layers import UnquantizableLayer
from tvm_mp.model import Report
from tvm_mp.reporting import render


def test_markdown_lists_unquantizable_ops_with_the_reason(tmp_path):
    unq = UnquantizableLayer("float_conv1d_0", "conv1d", (1, 4, 8), (4, 4, 3), (1, 4, 6),
                             "a 1-D convolution: tvm-mp quantizes conv2d and dense layers only | so it stays fp32")
    (tmp_path / "report.json").write_text(json.dumps(Report((), 0.0, unquantizable=(unq,)).to_dict()))
    text = render(tmp_path).read_text()
    assert "- layers: 0 (0 left in fp32 by the plan); 1 conv / matmul op tvm-mp cannot quantize" in text
    assert "## Not quantized (1 conv / matmul op tvm-mp cannot quantize)" in text
    assert ("| float_conv1d_0 | conv1d | (1, 4, 8) | (4, 4, 3) | (1, 4, 6) | a 1-D convolution: tvm-mp quantizes "
            "conv2d and dense layers only / so it stays fp32 |") in text
    assert not list(tmp_path.glob("*.png"))  # no layer rows: no weight plot


def test_markdown_explains_the_plan(tmp_path):
    from tvm_mp.model import LayerWhy, PlanExplanation

    why = PlanExplanation("budget search", (LayerWhy("conv2d_0", "w8a8", 2e-3, 1, "kept at its most precise option "
                                                     "(sensitivity rank 1/2): w4a8 would save 5 % | ...", 1e-5),
                                            LayerWhy("conv2d_1", "w4a8", 1e-4, 2, "the cheapest of its 2 options")),
                          "w4a8", "output noise ratio", budget="energy_uj <= 10", score_name="accuracy_fn",
                          fp32_score=0.9, plan_score=0.88)
    (tmp_path / "report.json").write_text(json.dumps(Report((), 0.0, accuracy=0.87, explanation=why).to_dict()))
    text = render(tmp_path).read_text()
    assert "## Why each layer got its bits" in text and "budget search, energy_uj <= 10" in text
    assert "Scores (accuracy_fn): fp32 0.9, this plan (NumPy reference) 0.88; the built model: 0.87." in text
    assert "| conv2d_0 | w8a8 | 2.00e-03 | 1/2 | kept at its most precise option (sensitivity rank 1/2): w4a8 would " \
           "save 5 % / ... |" in text
