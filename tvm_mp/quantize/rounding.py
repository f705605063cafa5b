"""Data-aware weight rounding: GPTQ-style sequential quantization with error feedback.

Rounding each weight to its nearest level minimizes the weight error, not the layer's output error. With the
second moment ``H = E[x x^T]`` of the layer's inputs (from calibration), weights are quantized one reduction index
at a time and the rounding error of each is pushed onto the not-yet-quantized weights through the inverse of
``H`` (the optimal brain surgeon update, as in GPTQ), which keeps ``E||x (W - W_q)||^2`` small. At 2-3 bits this
is the difference between a usable layer and a broken one (digits CNN, uniform w2a2: 0.53 -> 0.88 top-1).

The per-channel scale is chosen first (clipped-MSE grid of :func:`tvm_mp.quantize.scheme.quantize_weights`), so
the integer range and the arithmetic of the kernels are unchanged; only which integer each weight gets changes.
Deterministic: plain linear algebra in float64, natural column order.
"""

from __future__ import annotations

import numpy as np

#: Dampening added to H's diagonal, as a fraction of its mean diagonal (keeps the inverse well conditioned).
DAMPENING = 0.01


def input_second_moment(cols: np.ndarray) -> np.ndarray:
    """``H = X^T X / n`` of im2col rows ``cols [n, R]`` (float64)."""
    cols = np.asarray(cols, dtype=np.float64)
    return cols.T @ cols / max(len(cols), 1)


def _upper_inverse_factor(h: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of ``(H + damp I)^-1``."""
    h = h.copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h += DAMPENING * float(np.mean(np.diag(h))) * np.eye(len(h))
    return np.linalg.cholesky(np.linalg.inv(h)).T


def gptq_rows(rows: np.ndarray, scale: np.ndarray, lo: int, hi: int, h: np.ndarray, binary: bool) -> np.ndarray:
    """Quantize ``rows [OC, R]`` (float64) with per-row ``scale`` to integers in [lo, hi] (or signs if binary)."""
    w = rows.astype(np.float64).copy()
    u = _upper_inverse_factor(h)
    q = np.zeros_like(w)
    for i in range(w.shape[1]):
        col = w[:, i]
        qi = np.where(col >= 0, 1.0, -1.0) if binary else np.clip(np.rint(col / scale), lo, hi)
        q[:, i] = qi
        err = (col - qi * scale) / u[i, i]
        w[:, i + 1 :] -= np.outer(err, u[i, i + 1 :])
    return q
