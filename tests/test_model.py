"""The compile report: the ops tvm-mp cannot quantize are in its text and round-trip through report.json."""

import json

import pytest

from tvm_mp.errors import Error
from tvm_mp.layers import UnquantizableLayer
from tvm_mp.model import LayerReport, Report

ROW = LayerReport("conv2d_0", "conv2d", "w4a4", "bitserial", 100, 8, 64, latency_ms=0.1, energy_uj=0.2,
                  arithmetic="int32")
UNQ = (UnquantizableLayer("float_conv1d_0", "conv1d", (1, 4, 8), (4, 4, 3), (1, 4, 6), "a 1-D convolution: why"),
       UnquantizableLayer("float_matmul_0", "matmul", (2, 8), (8, 4), (2, 4), "its weight is not a constant"))


def test_report_lists_unquantizable_ops_and_round_trips():
    report = Report((ROW,), 0.01, 0.2, 0.1, unquantizable=list(UNQ))
    assert report.unquantizable == UNQ
    data = json.loads(json.dumps(report.to_dict()))
    assert data["unquantizable"][0] == {"name": "float_conv1d_0", "op": "conv1d", "input_shape": [1, 4, 8],
                                        "weight_shape": [4, 4, 3], "output_shape": [1, 4, 6],
                                        "reason": "a 1-D convolution: why"}
    assert Report.from_dict(data) == report
    lines = str(report).splitlines()
    at = lines.index("not quantized (2 conv / matmul ops tvm-mp cannot quantize; they run as TVM builds them):")
    assert lines[at + 1:at + 3] == [f"  {UNQ[0].summary}", f"  {UNQ[1].summary}"]
    assert "not quantized" not in str(Report((ROW,), 0.01))


def test_a_report_without_the_field_loads_and_a_damaged_one_is_one_line():
    data = Report((ROW,), 0.01).to_dict()
    del data["unquantizable"]  # written before the field existed
    assert Report.from_dict(data).unquantizable == ()
    for bad in ([{"name": "float_conv1d_0"}], [{**UNQ[0].to_dict(), "reason": ""}], ["conv1d"],
                [{**UNQ[0].to_dict(), "why": "x"}]):
        with pytest.raises(Error, match=r"^report.json is not a tvm-mp report \(.*\); re-export the model$"):
            Report.from_dict({**data, "unquantizable": bad})
    with pytest.raises(Error, match="Report.unquantizable holds UnquantizableLayer records, got dict"):
        Report((ROW,), 0.01, unquantizable=(UNQ[0].to_dict(),))
