"""Bundled workloads: the trained digits CNN and builders of untrained MLPerf-Tiny-like ONNX models.

The builders live in :mod:`tvm_mp.models.builders` (imported on demand because they need ``onnx``);
the digits CNN is trained by ``tools/train_digits.py`` (not part of the package) and shipped as ``digits_cnn.onnx``
with its measured accuracy in ``digits_cnn.json``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["digits_cnn_path", "digits_cnn_info_path"]


def digits_cnn_path() -> Path:
    """Return the path of the bundled, trained digits CNN (``digits_cnn.onnx``, fp32, opset 17)."""
    return Path(__file__).resolve().parent / "digits_cnn.onnx"


def digits_cnn_info_path() -> Path:
    """Return the path of the JSON record of the digits CNN's training settings and test accuracy."""
    return Path(__file__).resolve().parent / "digits_cnn.json"
