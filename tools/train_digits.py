"""Train the bundled digits CNN with NumPy only and export it to ONNX.

Run ``python -m tools.train_digits [--out PATH] [--epochs N] [--seed S]`` from the repository root to regenerate
``tvm_mp/models/digits_cnn.onnx`` and its record ``digits_cnn.json`` (training settings, seed and the test accuracy
measured with onnxruntime on the exported file).

Why hand-written NumPy: the project must not depend on a deep-learning framework, and the network is
tiny (8x8 inputs), so forward and backward passes written with im2col train it in well under two
minutes on two cores. Training is deterministic: all randomness (initial weights, shuffling, the
one-pixel shift augmentation) comes from ``np.random.default_rng(seed)`` and the arithmetic is
float64, so two runs on one machine give identical weights.

Architecture (kept so that later work sees conv, batch norm, max pooling and a dense layer)::

    Conv(1->16, 3x3, pad 1) -> BN -> Relu -> Conv(16->32, 3x3, pad 1) -> BN -> Relu -> MaxPool 2x2
    -> Conv(32->32, 3x3, pad 1) -> BN -> Relu -> MaxPool 2x2 -> Flatten -> Gemm(128->10)

Batch norm uses batch statistics while training and exports its running statistics (PyTorch's
conventions: momentum 0.1 on the running values, unbiased running variance, epsilon 1e-5).

The export imitates what ``torch.onnx.export`` writes, because the importer must cope with such
files: input ``input`` with a dynamic batch dimension ``N``, output ``logits``, unfolded
BatchNormalization nodes, the dense weight as a ``Constant`` node and the flatten written as
``Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape`` (from ``x.view(x.size(0), -1)``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx is imported only when exporting, to keep this module cheap to import
    import onnx

BN_EPS = 1e-5
#: PyTorch's BatchNorm momentum (weight of the new batch statistic in the running value).
BN_MOMENTUM = 0.1
#: Channels of the three convolutions.
CONV_CHANNELS = (16, 32, 32)
NUM_CLASSES = 10
#: Producer name written into the ONNX file. It names the module where this script lived when the shipped
#: ``digits_cnn.onnx`` was trained, so that retraining reproduces that file byte for byte (its sha256 is in
#: ``digits_cnn.json``).
PRODUCER = "tvm_mp.models.train_digits"

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; recorded in ``digits_cnn.json`` next to the model."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    augment_shift: int = 1
    seed: int = 0


# --------------------------------------------------------------------------------------------------
# Layers: forward functions return (output, cache), backward functions take (grad, cache).
# --------------------------------------------------------------------------------------------------
def _im2col(x: np.ndarray) -> np.ndarray:
    """Patches of a 3x3, pad-1, stride-1 convolution: ``(N, C, H, W) -> (N*H*W, C*9)``."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N, C, H, W, 3, 3
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def _col2im(cols: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Adjoint of :func:`_im2col`: scatter-add patch gradients back to ``(N, C, H, W)``."""
    n, c, h, w = shape
    cols = cols.reshape(n, h, w, c, 3, 3)
    dxp = np.zeros((n, c, h + 2, w + 2), cols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i : i + h, j : j + w] += cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def conv3x3_forward(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, tuple]:
    """3x3 convolution with padding 1 and no bias (batch norm follows)."""
    n, _, h, w = x.shape
    cols = _im2col(x)
    out = cols @ weight.reshape(weight.shape[0], -1).T
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2), (cols, x.shape, weight)


def conv3x3_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`conv3x3_forward` with respect to its input and weight."""
    cols, x_shape, weight = cache
    d = dout.transpose(0, 2, 3, 1).reshape(-1, weight.shape[0])
    dweight = (d.T @ cols).reshape(weight.shape)
    dx = _col2im(d @ weight.reshape(weight.shape[0], -1), x_shape)
    return dx, dweight


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Training-mode batch norm over (N, H, W); also returns the batch mean and biased variance."""
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
    out = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    return out, (xhat, inv_std, gamma, mean, var)


def batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of training-mode batch norm with respect to input, scale and shift."""
    xhat, inv_std, gamma, _, _ = cache
    m = dout.shape[0] * dout.shape[2] * dout.shape[3]
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    dbeta = dout.sum(axis=(0, 2, 3))
    dxhat = dout * gamma[None, :, None, None]
    dx = (inv_std / m)[None, :, None, None] * (
        m * dxhat - dxhat.sum(axis=(0, 2, 3))[None, :, None, None]
        - xhat * (dxhat * xhat).sum(axis=(0, 2, 3))[None, :, None, None]
    )
    return dx, dgamma, dbeta


def maxpool2_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """2x2 max pooling with stride 2 (even sizes only)."""
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = blocks.argmax(axis=-1)  # first maximum, so ties send the gradient to one element only
    return np.take_along_axis(blocks, arg[..., None], axis=-1)[..., 0], (arg, x.shape)


def maxpool2_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Route each pooled gradient to the element that was the maximum."""
    arg, (n, c, h, w) = cache
    dblocks = np.zeros((*dout.shape, 4), dout.dtype)
    np.put_along_axis(dblocks, arg[..., None], dout[..., None], axis=-1)
    return dblocks.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------
def init_params(seed: int) -> Params:
    """He-initialised weights, unit batch-norm scales and PyTorch's initial running statistics."""
    rng = np.random.default_rng(seed)
    params: Params = {}
    in_ch = 1
    for i, out_ch in enumerate(CONV_CHANNELS, start=1):
        params[f"conv{i}.weight"] = rng.normal(0.0, np.sqrt(2.0 / (in_ch * 9)), (out_ch, in_ch, 3, 3))
        params[f"bn{i}.weight"] = np.ones(out_ch)
        params[f"bn{i}.bias"] = np.zeros(out_ch)
        params[f"bn{i}.running_mean"] = np.zeros(out_ch)
        params[f"bn{i}.running_var"] = np.ones(out_ch)
        in_ch = out_ch
    fan_in = CONV_CHANNELS[-1] * 2 * 2
    bound = 1.0 / np.sqrt(fan_in)
    params["fc.weight"] = rng.uniform(-bound, bound, (NUM_CLASSES, fan_in))
    params["fc.bias"] = np.zeros(NUM_CLASSES)
    return params


def _trainable(params: Params) -> list[str]:
    """Names of the parameters the optimiser updates (the running statistics are not among them)."""
    return [k for k in params if not k.endswith(("running_mean", "running_var"))]


def forward_train(params: Params, x: np.ndarray) -> tuple[np.ndarray, list]:
    """Training forward pass (batch statistics); returns logits and the caches for backward."""
    caches = []
    h = x
    for i in range(1, 4):
        h, c_conv = conv3x3_forward(h, params[f"conv{i}.weight"])
        h, c_bn = batchnorm_forward(h, params[f"bn{i}.weight"], params[f"bn{i}.bias"])
        relu_mask = h > 0
        h = h * relu_mask
        c_pool = None
        if i >= 2:
            h, c_pool = maxpool2_forward(h)
        caches.append((c_conv, c_bn, relu_mask, c_pool))
    flat = h.reshape(h.shape[0], -1)
    logits = flat @ params["fc.weight"].T + params["fc.bias"]
    caches.append((flat, h.shape))
    return logits, caches


def backward(params: Params, dlogits: np.ndarray, caches: list) -> Params:
    """Gradients of all trainable parameters given the gradient of the loss w.r.t. the logits."""
    grads: Params = {}
    flat, pooled_shape = caches[-1]
    grads["fc.weight"] = dlogits.T @ flat
    grads["fc.bias"] = dlogits.sum(axis=0)
    dh = (dlogits @ params["fc.weight"]).reshape(pooled_shape)
    for i in range(3, 0, -1):
        c_conv, c_bn, relu_mask, c_pool = caches[i - 1]
        if c_pool is not None:
            dh = maxpool2_backward(dh, c_pool)
        dh = dh * relu_mask
        dh, grads[f"bn{i}.weight"], grads[f"bn{i}.bias"] = batchnorm_backward(dh, c_bn)
        dh, grads[f"conv{i}.weight"] = conv3x3_backward(dh, c_conv)
    return grads


def forward_eval(params: Params, x: np.ndarray) -> np.ndarray:
    """Inference forward pass with the running statistics (what the exported ONNX model computes)."""
    h = np.asarray(x, np.float64)
    for i in range(1, 4):
        h, _ = conv3x3_forward(h, params[f"conv{i}.weight"])
        scale = params[f"bn{i}.weight"] / np.sqrt(params[f"bn{i}.running_var"] + BN_EPS)
        shift = params[f"bn{i}.bias"] - params[f"bn{i}.running_mean"] * scale
        h = np.maximum(h * scale[None, :, None, None] + shift[None, :, None, None], 0.0)
        if i >= 2:
            h, _ = maxpool2_forward(h)
    return h.reshape(h.shape[0], -1) @ params["fc.weight"].T + params["fc.bias"]


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy loss and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = float(-np.log(p[np.arange(n), labels] + 1e-12).mean())
    p[np.arange(n), labels] -= 1.0
    return loss, p / n


def _update_running_stats(params: Params, caches: list) -> None:
    """Move the running mean and (unbiased) variance towards this batch's, as PyTorch does."""
    for i in range(1, 4):
        xhat, _, _, mean, var = caches[i - 1][1]
        count = xhat.shape[0] * xhat.shape[2] * xhat.shape[3]
        unbiased = var * count / max(count - 1, 1)
        rm, rv = f"bn{i}.running_mean", f"bn{i}.running_var"
        params[rm] = (1 - BN_MOMENTUM) * params[rm] + BN_MOMENTUM * mean
        params[rv] = (1 - BN_MOMENTUM) * params[rv] + BN_MOMENTUM * unbiased


def _shift_augment(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by up to ``max_shift`` pixels in each direction, filling with zeros.

    Hand-written digits vary in position; small shifts are a cheap, label-preserving way to reduce
    over-fitting on a 1,437-image training set.
    """
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    out = np.empty_like(x)
    for k in range(n):
        out[k] = padded[k, :, dy[k] : dy[k] + h, dx[k] : dx[k] + w]
    return out


def train(x: np.ndarray, y: np.ndarray, config: TrainConfig = TrainConfig(), log=None) -> Params:
    """Train the CNN on ``x`` (N, 1, 8, 8) and ``y`` (N,) with Adam and a cosine learning-rate decay.

    Deterministic for a given ``config.seed``: the seed fixes the initial weights, the shuffling and
    the augmentation. ``log``, if given, is called with one line per epoch.

    BLAS runs single-threaded here: the matrices are small, so threads bring little, and on a busy
    machine OpenBLAS threads that wait for each other made training five times slower.
    """
    # threadpoolctl is a dependency of scikit-learn, which the project already requires.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _train(x, y, config, log)


def _train(x: np.ndarray, y: np.ndarray, config: TrainConfig, log) -> Params:
    """The training loop of :func:`train`."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    params = init_params(config.seed)
    rng = np.random.default_rng([config.seed, 1])  # a stream separate from the initial weights
    names = _trainable(params)
    m = {k: np.zeros_like(params[k]) for k in names}
    v = {k: np.zeros_like(params[k]) for k in names}
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
    steps_per_epoch = int(np.ceil(len(x) / config.batch_size))
    total_steps = config.epochs * steps_per_epoch
    step = 0
    for epoch in range(config.epochs):
        order = rng.permutation(len(x))
        xs = _shift_augment(x[order], config.augment_shift, rng)
        ys = y[order]
        losses = []
        for start in range(0, len(x), config.batch_size):
            xb, yb = xs[start : start + config.batch_size], ys[start : start + config.batch_size]
            if len(xb) < 2:  # batch statistics of a single image are meaningless
                continue
            logits, caches = forward_train(params, xb)
            loss, dlogits = softmax_cross_entropy(logits, yb)
            losses.append(loss)
            grads = backward(params, dlogits, caches)
            _update_running_stats(params, caches)
            step += 1
            lr = config.learning_rate * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / total_steps))
            for k in names:
                g = grads[k]
                if k.startswith(("conv", "fc.weight")):  # no decay on biases and BN parameters
                    g = g + config.weight_decay * params[k]
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                m_hat = m[k] / (1 - beta1**step)
                v_hat = v[k] / (1 - beta2**step)
                params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + adam_eps)
        if log is not None:
            log(f"epoch {epoch + 1:3d}/{config.epochs}  loss {np.mean(losses):.4f}")
    return params


# --------------------------------------------------------------------------------------------------
# Export and evaluation
# --------------------------------------------------------------------------------------------------
def export_onnx(params: Params, doc: str = "") -> onnx.ModelProto:
    """Write the trained network as an opset-17 ``onnx.ModelProto`` shaped like PyTorch's export.

    The dense weight is emitted as a ``Constant`` node and the flatten as PyTorch writes
    ``x.view(x.size(0), -1)``, so the file exercises the same importer paths as real exports.
    """
    from tvm_mp.models.builders import GraphBuilder

    g = GraphBuilder()
    h = "input"
    in_ch = 1
    for i, out_ch in enumerate(CONV_CHANNELS, start=1):
        h = g.conv(h, f"conv{i}", in_ch, out_ch, 3, weight=params[f"conv{i}.weight"])
        stats = {k: params[f"bn{i}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
        h = g.batchnorm(h, f"bn{i}", out_ch, stats=stats, epsilon=BN_EPS)
        h = g.relu(h, f"relu{i}")
        if i >= 2:
            h = g.maxpool(h, f"pool{i - 1}")
        in_ch = out_ch
    h = g.torch_flatten(h, "flatten")
    h = g.gemm(h, "fc", CONV_CHANNELS[-1] * 4, NUM_CLASSES, weight=params["fc.weight"],
               bias=params["fc.bias"], as_constant=True)
    return g.model("digits_cnn", (1, 8, 8), h, NUM_CLASSES, producer=PRODUCER, doc=doc)


def onnx_accuracy(model_bytes: bytes, x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """Top-1 ``(correct, total)`` of a serialised ONNX model under onnxruntime (CPU, one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": np.asarray(x, np.float32)})[0]
    return int((logits.argmax(axis=1) == y).sum()), int(len(y))


def main(argv: list[str] | None = None) -> int:
    """Train, export, measure with onnxruntime and write the ``.onnx`` file and its ``.json`` record."""
    from tvm_mp.datasets import SPLIT_SEED, TEST_FRACTION, load_digits_split
    from tvm_mp.models import digits_cnn_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=digits_cnn_path(),
                        help="output .onnx path; the .json record is written next to it")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    args = parser.parse_args(argv)
    config = TrainConfig(epochs=args.epochs, seed=args.seed)

    split = load_digits_split()
    start = time.perf_counter()
    params = train(split.x_train, split.y_train, config, log=print)
    seconds = time.perf_counter() - start

    model = export_onnx(params, doc=f"Digits CNN trained by {PRODUCER}, seed {config.seed}")
    data = model.SerializeToString()
    correct, total = onnx_accuracy(data, split.x_test, split.y_test)
    numpy_correct = int((forward_eval(params, split.x_test).argmax(axis=1) == split.y_test).sum())
    train_correct, train_total = onnx_accuracy(data, split.x_train, split.y_train)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    record = {
        "model": args.out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "test_accuracy": correct / total,
        "test_correct": correct,
        "test_total": total,
        "train_accuracy": train_correct / train_total,
        "accuracy_measured_with": "onnxruntime, fp32, CPUExecutionProvider",
        "split": {"test_fraction": TEST_FRACTION, "random_state": SPLIT_SEED, "stratified": True,
                  "source": "sklearn.datasets.load_digits"},
        "training": {**asdict(config), "optimizer": "Adam + cosine decay", "bn_momentum": BN_MOMENTUM,
                     "bn_epsilon": BN_EPS, "precision": "float64 (exported as float32)",
                     "seconds": round(seconds, 1)},
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"trained in {seconds:.1f} s; test accuracy {correct}/{total} = {correct / total:.4f} "
          f"(onnxruntime), {numpy_correct}/{total} (numpy); wrote {args.out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
