"""Is onnxruntime's int8 conv exact on this host? One QLinearConv (u8 activations x s8 weights) at the extremes.

Every code 255, every weight +127, 64 input channels, 1x1: the exact accumulator is 255 * 127 * 64 = 2072640; an
x86 kernel built on ``vpmaddubsw`` (AVX2 / AVX-512 without VNNI) sums products in int16 pairs, which saturate at
32767, giving 32767 * 32 = 1048544. The output scale maps the exact sum to 200, the saturated one to 101.
``ConvInteger`` (raw int32 accumulator) is checked too.

    python bench/ort_saturation.py
"""

from __future__ import annotations

import numpy as np


def run(channels: int = 64, out_channels: int = 8, size: int = 8) -> dict:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    x = np.full((1, channels, size, size), 255, np.uint8)
    w = np.full((out_channels, channels, 1, 1), 127, np.int8)
    exact = 255 * 127 * channels
    scale = exact / 200.0

    def session(node, inits, out_type):
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
                              [helper.make_tensor_value_info("y", out_type, [1, out_channels, size, size])], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])

    acc = session(helper.make_node("ConvInteger", ["x", "W"], ["y"]), [numpy_helper.from_array(w, "W")],
                  TensorProto.INT32).run(None, {"x": x})[0].ravel()[0]
    consts = {"xs": np.array(1.0, np.float32), "xz": np.array(0, np.uint8), "W": w, "ws": np.array(1.0, np.float32),
              "wz": np.array(0, np.int8), "ys": np.array(scale, np.float32), "yz": np.array(0, np.uint8)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "W", "ws", "wz", "ys", "yz"], ["y"])
    y = session(node, [numpy_helper.from_array(v, k) for k, v in consts.items()], TensorProto.UINT8).run(
        None, {"x": x})[0].ravel()[0]
    return {"convinteger": int(acc), "convinteger_exact": exact, "qlinearconv": int(y), "qlinearconv_exact": 200,
            "qlinearconv_if_saturated": round(32767 * channels / 2 / scale), "onnxruntime": ort.__version__}


if __name__ == "__main__":
    r = run()
    print(f"onnxruntime {r['onnxruntime']}: ConvInteger {r['convinteger']} (exact {r['convinteger_exact']}); "
          f"QLinearConv {r['qlinearconv']} (exact {r['qlinearconv_exact']}, "
          f"saturated int16 pairs {r['qlinearconv_if_saturated']})")
