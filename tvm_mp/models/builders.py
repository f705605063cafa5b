"""ONNX builders of the benchmark CNNs (MLPerf Tiny-like), with untrained but well-scaled weights.

The models are meant for compiling and timing, not for accuracy: weights are He-initialised from a
fixed seed and BatchNormalization running statistics are random but sane, so activations stay in a
reasonable range through the depth and quantisers see realistic value ranges. Each model has the
features real exporters (PyTorch, tf2onnx) put in their files, because the importer has to cope with
them: an input named ``input`` with a dynamic batch dimension ``"N"``, an output named ``logits``,
BatchNormalization nodes that are not folded into the convolutions, Relu or Clip(0, 6) activations,
PyTorch's ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` flatten (or a plain ``Flatten``),
TF-style asymmetric "SAME" padding where TF models have it, and weights given as ``Constant`` nodes
as well as initializers.

Every builder is deterministic: the same seed gives a byte-identical serialised model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "BUILDERS",
    "Builder",
    "GraphBuilder",
    "build_digits_cnn",
    "build_ds_cnn",
    "build_fer_cnn",
    "build_mobilenet_v1_025",
    "build_mobilenet_v2_10",
    "build_random_cnn",
    "build_resnet18",
    "build_resnet8",
    "random_cnn_input_shape",
]

#: Opset of every model written by tvm-mp.
OPSET = 17
#: IR version matching opset 17 (what PyTorch writes with opset 17); older runtimes reject newer IRs.
IR_VERSION = 8
#: Name of the dynamic batch dimension of inputs and outputs.
BATCH_DIM = "N"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _contiguous(array: np.ndarray) -> np.ndarray:
    """C-contiguous copy that keeps 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-d)."""
    return np.array(array, order="C", copy=True)


class GraphBuilder:
    """Accumulates ONNX nodes and initializers and hands out unique tensor names.

    Layers take an optional weight array; without one they draw He-initialised weights (and sane
    BatchNormalization statistics) from ``rng``, in call order, which keeps builds reproducible.
    """

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    # -- naming and plumbing -------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        """Return a new unique name ``prefix`` or ``prefix_k``."""
        k = self._counts.get(prefix, 0)
        self._counts[prefix] = k + 1
        return prefix if k == 0 else f"{prefix}_{k}"

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as an initializer named ``name`` and return the name."""
        self.initializers.append(numpy_helper.from_array(_contiguous(array), name))
        return name

    def constant(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as the output of a ``Constant`` node (as exporters do for folded values)."""
        out = self.fresh(name)
        self.nodes.append(
            helper.make_node(
                "Constant", [], [out], name=self.fresh(f"/{name}/Constant"),
                value=numpy_helper.from_array(_contiguous(array), out),
            )
        )
        return out

    def node(self, op: str, inputs: Sequence[str], scope: str, **attrs) -> str:
        """Add a one-output node of type ``op`` named ``/scope/op`` and return its output name."""
        out = self.fresh(f"/{scope}/{op}_output_0")
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=self.fresh(f"/{scope}/{op}"), **attrs))
        return out

    def weight(self, name: str, array: np.ndarray, as_constant: bool = False) -> str:
        """Add a parameter either as an initializer or as a ``Constant`` node."""
        return self.constant(name, array) if as_constant else self.initializer(name, array)

    # -- layers --------------------------------------------------------------------------------
    def conv(
        self,
        x: str,
        scope: str,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        pads: Sequence[int] | None = None,
        group: int = 1,
        bias: bool = False,
        weight: np.ndarray | None = None,
        bias_value: np.ndarray | None = None,
        as_constant: bool = False,
    ) -> str:
        """2-D convolution; ``pads`` is ONNX order (top, left, bottom, right), default "same" for odd kernels."""
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if pads is None:
            pads = (kh // 2, kw // 2, kh // 2, kw // 2)
        fan_in = (in_ch // group) * kh * kw
        if weight is None:
            weight = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (out_ch, in_ch // group, kh, kw))
        inputs = [x, self.weight(f"{scope}.weight", np.asarray(weight, np.float32), as_constant)]
        if bias or bias_value is not None:
            if bias_value is None:
                bias_value = self.rng.normal(0.0, 0.01, out_ch)
            inputs.append(self.initializer(f"{scope}.bias", np.asarray(bias_value, np.float32)))
        return self.node(
            "Conv", inputs, scope, dilations=[1, 1], group=group, kernel_shape=[kh, kw],
            pads=list(pads), strides=[stride, stride],
        )

    def batchnorm(
        self,
        x: str,
        scope: str,
        channels: int,
        stats: dict[str, np.ndarray] | None = None,
        epsilon: float = 1e-5,
    ) -> str:
        """Inference-mode BatchNormalization; ``stats`` has ``weight, bias, running_mean, running_var``."""
        if stats is None:
            stats = {
                "weight": self.rng.uniform(0.8, 1.2, channels),
                "bias": self.rng.normal(0.0, 0.1, channels),
                "running_mean": self.rng.normal(0.0, 0.1, channels),
                "running_var": self.rng.uniform(0.8, 1.25, channels),
            }
        names = [self.initializer(f"{scope}.{k}", np.asarray(stats[k], np.float32))
                 for k in ("weight", "bias", "running_mean", "running_var")]
        return self.node("BatchNormalization", [x, *names], scope, epsilon=epsilon, momentum=0.9)

    def relu(self, x: str, scope: str) -> str:
        """Relu activation."""
        return self.node("Relu", [x], scope)

    def relu6(self, x: str, scope: str) -> str:
        """ReLU6 written as PyTorch exports it: Clip with constant ``min``/``max`` inputs."""
        lo = self.constant(f"{scope}.min", np.array(0.0, np.float32))
        hi = self.constant(f"{scope}.max", np.array(6.0, np.float32))
        return self.node("Clip", [x, lo, hi], scope)

    def maxpool(self, x: str, scope: str, kernel: int = 2, stride: int = 2) -> str:
        """Max pooling without padding."""
        return self.node(
            "MaxPool", [x], scope, ceil_mode=0, dilations=[1, 1], kernel_shape=[kernel, kernel],
            pads=[0, 0, 0, 0], strides=[stride, stride],
        )

    def avgpool(self, x: str, scope: str, kernel: tuple[int, int]) -> str:
        """Average pooling over a fixed window (how TF exports its global pooling)."""
        return self.node(
            "AveragePool", [x], scope, ceil_mode=0, count_include_pad=0, kernel_shape=list(kernel),
            pads=[0, 0, 0, 0], strides=list(kernel),
        )

    def global_avgpool(self, x: str, scope: str) -> str:
        """Global average pooling."""
        return self.node("GlobalAveragePool", [x], scope)

    def flatten(self, x: str, scope: str) -> str:
        """The ``Flatten(axis=1)`` operator."""
        return self.node("Flatten", [x], scope, axis=1)

    def torch_flatten(self, x: str, scope: str) -> str:
        """Flatten as PyTorch exports ``x.view(x.size(0), -1)``: Shape, Gather(0), Unsqueeze, Concat, Reshape."""
        shape = self.node("Shape", [x], scope)
        index = self.constant(f"{scope}.batch_index", np.array(0, np.int64))
        batch = self.node("Gather", [shape, index], scope, axis=0)
        axes = self.constant(f"{scope}.unsqueeze_axes", np.array([0], np.int64))
        batch1 = self.node("Unsqueeze", [batch, axes], scope)
        minus_one = self.constant(f"{scope}.minus_one", np.array([-1], np.int64))
        new_shape = self.node("Concat", [batch1, minus_one], scope, axis=0)
        return self.node("Reshape", [x, new_shape], scope, allowzero=0)

    def gemm(
        self,
        x: str,
        scope: str,
        in_features: int,
        out_features: int,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        relu_follows: bool = False,
        as_constant: bool = False,
    ) -> str:
        """Dense layer as PyTorch exports ``nn.Linear``: Gemm with ``transB=1``, weight ``(out, in)``."""
        if weight is None:
            gain = 2.0 if relu_follows else 1.0
            weight = self.rng.normal(0.0, np.sqrt(gain / in_features), (out_features, in_features))
        if bias is None:
            bias = self.rng.normal(0.0, 0.01, out_features)
        w = self.weight(f"{scope}.weight", np.asarray(weight, np.float32), as_constant)
        b = self.initializer(f"{scope}.bias", np.asarray(bias, np.float32))
        return self.node("Gemm", [x, w, b], scope, alpha=1.0, beta=1.0, transB=1)

    # -- finishing -----------------------------------------------------------------------------
    def model(
        self,
        graph_name: str,
        input_shape: Sequence[int],
        output: str,
        num_classes: int,
        producer: str = "tvm_mp.models.builders",
        doc: str = "",
    ) -> onnx.ModelProto:
        """Wrap the nodes into a checked opset-17 model with input ``input`` and output ``logits``.

        ``input_shape`` is the per-sample shape without batch; the batch dimension is symbolic.
        The last node's output is renamed to ``logits``.
        """
        last = self.nodes[-1]
        if list(last.output) != [output]:
            raise ValueError(f"the model output {output!r} must be the output of the last node")
        last.output[0] = OUTPUT_NAME
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, *input_shape])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, num_classes])],
            initializer=self.initializers,
            doc_string=doc,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer,
            producer_version="0.1.0", ir_version=IR_VERSION,
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def _conv_bn_act(g: GraphBuilder, x: str, scope: str, in_ch: int, out_ch: int, kernel, stride=1,
                 pads=None, group=1, act: str = "relu") -> str:
    """Conv (no bias) + BatchNormalization + activation (``"relu"``, ``"relu6"`` or ``"none"``)."""
    y = g.conv(x, f"{scope}/conv", in_ch, out_ch, kernel, stride=stride, pads=pads, group=group)
    y = g.batchnorm(y, f"{scope}/bn", out_ch)
    if act == "relu":
        return g.relu(y, f"{scope}/relu")
    if act == "relu6":
        return g.relu6(y, f"{scope}/relu6")
    return y


def build_resnet8(seed: int = 0) -> onnx.ModelProto:
    """MLPerf Tiny image-classification ResNet-8 (CIFAR-10): input ``(N, 3, 32, 32)``, 10 classes.

    Stem conv 16 + BN + relu, then three residual stacks of width 16, 32, 64 (strides 1, 2, 2) each
    with two 3x3 conv + BN, a 1x1 stride-2 conv shortcut where the shape changes, Add and relu;
    global average pool, PyTorch-style flatten and a dense layer.
    """
    g = GraphBuilder(np.random.default_rng(seed))
    x = _conv_bn_act(g, INPUT_NAME, "stem", 3, 16, 3)
    in_ch = 16
    for i, (width, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        s = f"stack{i}"
        y = _conv_bn_act(g, x, f"{s}/a", in_ch, width, 3, stride=stride)
        y = _conv_bn_act(g, y, f"{s}/b", width, width, 3, act="none")
        shortcut = x
        if stride != 1 or in_ch != width:
            shortcut = g.conv(x, f"{s}/shortcut", in_ch, width, 1, stride=stride, pads=(0, 0, 0, 0), bias=True)
        x = g.relu(g.node("Add", [y, shortcut], f"{s}/add"), f"{s}/relu")
        in_ch = width
    x = g.global_avgpool(x, "pool")
    x = g.torch_flatten(x, "flatten")
    x = g.gemm(x, "fc", 64, 10)
    return g.model("resnet8", (3, 32, 32), x, 10, doc="MLPerf Tiny ResNet-8, untrained, seed %d" % seed)


def build_ds_cnn(seed: int = 0) -> onnx.ModelProto:
    """MLPerf Tiny keyword-spotting DS-CNN: input ``(N, 1, 49, 10)`` MFCC features, 12 classes.

    Conv 64 (10x4, stride 2, TF "SAME" padding (4, 1, 5, 2)) + BN + relu; four depthwise-separable
    blocks (depthwise 3x3 + BN + relu, pointwise 1x1 64 + BN + relu); average pool over the whole
    25x5 map; Flatten; dense to 12.
    """
    g = GraphBuilder(np.random.default_rng(seed))
    x = _conv_bn_act(g, INPUT_NAME, "stem", 1, 64, (10, 4), stride=2, pads=(4, 1, 5, 2))
    for i in range(1, 5):
        x = _conv_bn_act(g, x, f"block{i}/dw", 64, 64, 3, group=64)
        x = _conv_bn_act(g, x, f"block{i}/pw", 64, 64, 1, pads=(0, 0, 0, 0))
    x = g.avgpool(x, "pool", (25, 5))
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", 64, 12)
    return g.model("ds_cnn", (1, 49, 10), x, 12, doc="MLPerf Tiny DS-CNN (keyword spotting), untrained, seed %d" % seed)


#: MobileNetV1 (width 1.0) depthwise-separable blocks: (pointwise output channels, depthwise stride).
_MOBILENET_V1_BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]


def build_mobilenet_v1_025(seed: int = 0) -> onnx.ModelProto:
    """MobileNetV1 with width 0.25 at 96x96 (MLPerf Tiny visual wake words), 2 classes.

    Stem conv 8 (3x3, stride 2) then 13 depthwise-separable blocks with the standard strides, all
    with BN and ReLU6 (Clip(0, 6)); global average pool, Flatten, dense to 2. Stride-2 convolutions
    use TF "SAME" padding (0, 0, 1, 1), as the TF reference model does; the dense weight is a
    ``Constant`` node, as some exporters write folded weights.
    """
    g = GraphBuilder(np.random.default_rng(seed))
    same_s2 = (0, 0, 1, 1)
    x = _conv_bn_act(g, INPUT_NAME, "stem", 3, 8, 3, stride=2, pads=same_s2, act="relu6")
    ch = 8
    for i, (out_full, stride) in enumerate(_MOBILENET_V1_BLOCKS, start=1):
        out = out_full // 4
        pads = same_s2 if stride == 2 else None
        x = _conv_bn_act(g, x, f"block{i}/dw", ch, ch, 3, stride=stride, pads=pads, group=ch, act="relu6")
        x = _conv_bn_act(g, x, f"block{i}/pw", ch, out, 1, pads=(0, 0, 0, 0), act="relu6")
        ch = out
    x = g.global_avgpool(x, "pool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", ch, 2, as_constant=True)
    return g.model("mobilenet_v1_025", (3, 96, 96), x, 2,
                   doc="MobileNetV1 0.25 (visual wake words), untrained, seed %d" % seed)


def build_fer_cnn(seed: int = 0) -> onnx.ModelProto:
    """A small facial-expression CNN (FER-2013 sized): input ``(N, 1, 48, 48)``, 7 classes.

    Two pairs of 3x3 conv + BN + relu (32, 32 then 64, 64 channels), each pair followed by 2x2 max
    pooling; PyTorch-style flatten of the 64x12x12 map; dense 128 + relu; dense 7.
    """
    g = GraphBuilder(np.random.default_rng(seed))
    x = INPUT_NAME
    in_ch = 1
    for i, width in enumerate([32, 32, 64, 64], start=1):
        x = _conv_bn_act(g, x, f"conv{i}", in_ch, width, 3)
        in_ch = width
        if i % 2 == 0:
            x = g.maxpool(x, f"pool{i // 2}")
    x = g.torch_flatten(x, "flatten")
    x = g.relu(g.gemm(x, "fc1", 64 * 12 * 12, 128, relu_follows=True), "fc1/relu")
    x = g.gemm(x, "fc2", 128, 7)
    return g.model("fer_cnn", (1, 48, 48), x, 7, doc="Facial-expression CNN, untrained, seed %d" % seed)


def build_digits_cnn(seed: int = 0) -> onnx.ModelProto:
    """Load the bundled, trained digits CNN; ``seed`` is ignored (the weights are the trained ones)."""
    from . import digits_cnn_path

    del seed
    return onnx.load(str(digits_cnn_path()))


#: MobileNetV2 inverted-residual stages: (expansion t, output channels c, repeats n, first stride s).
_MOBILENET_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)]


def build_mobilenet_v2_10(seed: int = 0) -> onnx.ModelProto:
    """MobileNetV2 width 1.0 at 224x224 (ImageNet), 1000 classes: input ``(N, 3, 224, 224)``.

    Stem conv 32 (3x3, stride 2) + BN + ReLU6; 17 inverted-residual blocks (1x1 expansion by t + BN + ReLU6 --
    absent when t = 1 --, 3x3 depthwise + BN + ReLU6, 1x1 linear projection + BN) with an ``Add`` of the block's
    input wherever the stride is 1 and the width is unchanged (10 adds); 1x1 conv 1280 + BN + ReLU6; global average
    pool, Flatten, dense to 1000. 52 conv + 1 dense = 53 quantizable layers; PyTorch (torchvision) padding.
    """
    g = GraphBuilder(np.random.default_rng(seed))
    x = _conv_bn_act(g, INPUT_NAME, "stem", 3, 32, 3, stride=2, act="relu6")
    ch = 32
    block = 0
    for t, c, n, s in _MOBILENET_V2_STAGES:
        for i in range(n):
            block += 1
            scope = f"block{block}"
            stride = s if i == 0 else 1
            hidden = ch * t
            y = x
            if t != 1:
                y = _conv_bn_act(g, y, f"{scope}/expand", ch, hidden, 1, pads=(0, 0, 0, 0), act="relu6")
            y = _conv_bn_act(g, y, f"{scope}/dw", hidden, hidden, 3, stride=stride, group=hidden, act="relu6")
            y = _conv_bn_act(g, y, f"{scope}/project", hidden, c, 1, pads=(0, 0, 0, 0), act="none")
            if stride == 1 and ch == c:
                y = g.node("Add", [x, y], f"{scope}/add")
            x, ch = y, c
    x = _conv_bn_act(g, x, "head", ch, 1280, 1, pads=(0, 0, 0, 0), act="relu6")
    x = g.global_avgpool(x, "pool")
    x = g.flatten(x, "flatten")
    x = g.gemm(x, "fc", 1280, 1000)
    return g.model("mobilenet_v2_10", (3, 224, 224), x, 1000,
                   doc="MobileNetV2 1.0 (ImageNet, 224x224), untrained, seed %d" % seed)


def build_resnet18(seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 at 224x224 (ImageNet), 1000 classes: input ``(N, 3, 224, 224)``.

    Stem conv 64 (7x7, stride 2) + BN + relu, 3x3 stride-2 max pooling (padding 1); four stages of two basic
    blocks (two 3x3 conv + BN, relu after the ``Add``) of width 64, 128, 256, 512, the first block of stages 2-4 at
    stride 2 with a 1x1 stride-2 conv + BN shortcut; global average pool, PyTorch-style flatten, dense to 1000.
    17 + 3 conv + 1 dense = 21 quantizable layers (torchvision's layout and padding).
    """
    g = GraphBuilder(np.random.default_rng(seed))
    x = _conv_bn_act(g, INPUT_NAME, "stem", 3, 64, 7, stride=2)
    x = g.node("MaxPool", [x], "stem/pool", ceil_mode=0, dilations=[1, 1], kernel_shape=[3, 3],
               pads=[1, 1, 1, 1], strides=[2, 2])
    ch = 64
    for stage, width in enumerate([64, 128, 256, 512], start=1):
        for b in range(2):
            scope = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            y = _conv_bn_act(g, x, f"{scope}/a", ch, width, 3, stride=stride)
            y = _conv_bn_act(g, y, f"{scope}/b", width, width, 3, act="none")
            shortcut = x
            if stride != 1 or ch != width:
                shortcut = _conv_bn_act(g, x, f"{scope}/downsample", ch, width, 1, stride=stride,
                                        pads=(0, 0, 0, 0), act="none")
            x = g.relu(g.node("Add", [y, shortcut], f"{scope}/add"), f"{scope}/relu")
            ch = width
    x = g.global_avgpool(x, "pool")
    x = g.torch_flatten(x, "flatten")
    x = g.gemm(x, "fc", 512, 1000)
    return g.model("resnet18", (3, 224, 224), x, 1000, doc="ResNet-18 (ImageNet, 224x224), untrained, seed %d" % seed)


def build_random_cnn(seed: int, family: str = "image") -> onnx.ModelProto:
    """A random but plausible small CNN (for training and testing cost models on architectures they never saw).

    ``family="image"``: input ``(N, C, H, W)`` with C 1 or 3 and H, W 16-48, a square 3x3 or 5x5 conv stem.
    ``family="audio"``: a spectrogram-like input ``(N, 1, H, W)``, H 32-64 tall and W 8-16 narrow, a stem with a
    tall kernel (10x4, 7x3, 5x3 or 3x3) and "same" padding. Then 2-5 blocks, each a 3x3 conv, a depthwise-separable
    pair or a residual pair (Add, with a 1x1 shortcut when the shape changes), stride 1 or 2, sometimes followed by
    2x2 max pooling; ReLU or ReLU6; global average pooling (or a plain flatten of a small map), an optional hidden
    dense layer, a dense classifier. Every choice comes from ``seed`` and ``family``: the same pair gives the same
    model. :func:`random_cnn_input_shape` gives its batch-1 input shape.
    """
    if family not in ("image", "audio"):
        raise ValueError(f"family={family!r}: use 'image' or 'audio'")
    audio = family == "audio"
    rng = np.random.default_rng([seed, 0x5EED] + ([0xA0D] if audio else []))
    g = GraphBuilder(np.random.default_rng([seed, 1] + ([0xA0D] if audio else [])))
    c, h, w = _random_cnn_input(seed, family)
    h0, w0 = h, w
    act = "relu6" if rng.random() < 0.4 else "relu"
    if audio:
        width = int(rng.choice([16, 32, 48, 64]))
        kh, kw = [(10, 4), (7, 3), (5, 3), (3, 3)][int(rng.integers(4))]
        stride = int(rng.choice([1, 2]))
        pads = ((kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2)
        x = _conv_bn_act(g, INPUT_NAME, "stem", c, width, (kh, kw), stride=stride, pads=pads, act=act)
        h, w = (h + kh - 1 - kh) // stride + 1, (w + kw - 1 - kw) // stride + 1
    else:
        width = int(rng.choice([8, 16, 24, 32]))
        stride = int(rng.choice([1, 2])) if h >= 24 else 1
        k = int(rng.choice([3, 5])) if rng.random() < 0.3 else 3
        x = _conv_bn_act(g, INPUT_NAME, "stem", c, width, k, stride=stride, act=act)
        h, w = -(-h // stride), -(-w // stride)
    ch = width
    for i in range(1, int(rng.integers(2, 6)) + 1):
        s = f"block{i}"
        kind = str(rng.choice(["conv", "separable", "separable", "residual"] if audio
                              else ["conv", "separable", "residual"]))
        stride = 2 if min(h, w) >= 8 and rng.random() < 0.4 else 1
        out = int(min(128, ch * int(rng.choice([1, 2])))) if rng.random() < 0.7 else ch
        if kind == "conv":
            x = _conv_bn_act(g, x, s, ch, out, 3, stride=stride, act=act)
        elif kind == "separable":
            x = _conv_bn_act(g, x, f"{s}/dw", ch, ch, 3, stride=stride, group=ch, act=act)
            x = _conv_bn_act(g, x, f"{s}/pw", ch, out, 1, pads=(0, 0, 0, 0), act=act)
        else:
            y = _conv_bn_act(g, x, f"{s}/a", ch, out, 3, stride=stride, act=act)
            y = _conv_bn_act(g, y, f"{s}/b", out, out, 3, act="none")
            shortcut = x
            if stride != 1 or ch != out:
                shortcut = g.conv(x, f"{s}/shortcut", ch, out, 1, stride=stride, pads=(0, 0, 0, 0), bias=True)
            x = g.relu(g.node("Add", [y, shortcut], f"{s}/add"), f"{s}/relu")
        h, w = -(-h // stride), -(-w // stride)
        ch = out
        if min(h, w) >= 8 and rng.random() < 0.25:
            x = g.maxpool(x, f"{s}/pool")
            h, w = h // 2, w // 2
    if h * w * ch <= 1024 and rng.random() < 0.4:
        x = g.flatten(x, "flatten")
        features = h * w * ch
    else:
        x = g.flatten(g.global_avgpool(x, "pool"), "flatten")
        features = ch
    classes = int(rng.choice([2, 10, 12]))
    if rng.random() < 0.3:
        hidden = int(rng.choice([32, 64, 128]))
        x = g.relu(g.gemm(x, "fc1", features, hidden, relu_follows=True), "fc1/relu")
        features = hidden
    x = g.gemm(x, "fc", features, classes)
    return g.model(f"random_{'audio' if audio else 'cnn'}_{seed}", (c, h0, w0), x, classes,
                   doc=f"random {family} CNN, untrained, seed {seed}")


def _random_cnn_input(seed: int, family: str = "image") -> tuple[int, int, int]:
    if family == "audio":
        rng = np.random.default_rng([seed, 0x1A9, 0xA0D])
        return 1, int(rng.choice([32, 40, 49, 64])), int(rng.choice([8, 10, 12, 16]))
    rng = np.random.default_rng([seed, 0x1A9])
    c = int(rng.choice([1, 3]))
    h = int(rng.choice([16, 24, 32, 40, 48]))
    w = h if rng.random() < 0.8 else int(rng.choice([16, 24, 32]))
    return c, h, w


def random_cnn_input_shape(seed: int, family: str = "image") -> tuple[int, int, int, int]:
    """Batch-1 input shape of :func:`build_random_cnn` for ``seed`` and ``family``."""
    return (1, *_random_cnn_input(seed, family))


@dataclass(frozen=True)
class Builder:
    """A named workload: how to build it, and its input name and batch-1 input shape."""

    name: str
    build: Callable[[int], onnx.ModelProto]
    input_name: str
    input_shape: tuple[int, ...]


BUILDERS: dict[str, Builder] = {
    b.name: b
    for b in [
        Builder("resnet8", build_resnet8, INPUT_NAME, (1, 3, 32, 32)),
        Builder("ds_cnn", build_ds_cnn, INPUT_NAME, (1, 1, 49, 10)),
        Builder("mobilenet_v1_025", build_mobilenet_v1_025, INPUT_NAME, (1, 3, 96, 96)),
        Builder("fer_cnn", build_fer_cnn, INPUT_NAME, (1, 1, 48, 48)),
        Builder("digits_cnn", build_digits_cnn, INPUT_NAME, (1, 1, 8, 8)),
        Builder("mobilenet_v2_10", build_mobilenet_v2_10, INPUT_NAME, (1, 3, 224, 224)),
        Builder("resnet18", build_resnet18, INPUT_NAME, (1, 3, 224, 224)),
    ]
}
