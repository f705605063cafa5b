import json

import pytest

from tvm_mp.accel.energy import COMPONENTS
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.lower import ConvShape, OutputSpec
from tvm_mp.accel.mapping import search_mappings
from tvm_mp.accel.report import report_from_estimates
from tvm_mp.errors import Error
from tvm_mp.layers import LayerInfo
from tvm_mp.workload import ConvParams

HW = HardwareConfig.default()


def _layers():
    p = ConvParams(padding=(1, 1, 1, 1))
    return [LayerInfo("conv2d_0", "conv2d", (1, 8, 8, 8), (16, 8, 3, 3), (1, 16, 8, 8), p, True, 73728, 1152),
            LayerInfo("conv2d_1", "depthwise_conv2d", (1, 16, 8, 8), (16, 1, 3, 3), (1, 16, 8, 8),
                      ConvParams(padding=(1, 1, 1, 1), groups=16), True, 9216, 144),
            LayerInfo("dense_0", "dense", (1, 64), (10, 64), (1, 10), None, True, 640, 640)]


def test_report_table_totals_and_plot(tmp_path):
    layers = _layers()
    ests = {}
    for layer in layers[:2]:
        ests[layer.name] = search_mappings(ConvShape.from_layer(layer), 4, 4, HW, OutputSpec.codes(4)).best
    report = report_from_estimates("tiny", HW.name, layers, ests)
    assert report.energy_uj == pytest.approx(sum(e.energy_uj for e in ests.values()))
    assert report.cycles == sum(e.cycles for e in ests.values())
    for comp in COMPONENTS:
        assert report.energy.components_uj[comp] == pytest.approx(sum(e.energy.components_uj[comp]
                                                                      for e in ests.values()))
    text = str(report)
    assert "conv2d_1" in text and "(cpu)" in text and "total" in text and "dram" in text
    data = json.loads(report.to_json())
    assert [r["name"] for r in data["layers"]] == ["conv2d_0", "conv2d_1", "dense_0"]
    assert data["layers"][2]["energy"] is None
    png = report.plot(tmp_path / "sub" / "energy.png")
    blob = png.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000


def test_empty_report_cannot_be_plotted(tmp_path):
    report = report_from_estimates("none", HW.name, _layers(), {})
    assert report.energy_uj == 0
    with pytest.raises(Error, match="no layer with energy"):
        report.plot(tmp_path / "x.png")
