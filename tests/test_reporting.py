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
