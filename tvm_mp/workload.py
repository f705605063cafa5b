"""Geometry of a conv2d: a frozen value type shared by layer discovery, kernels, references and cost models."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedError


@dataclass(frozen=True)
class ConvParams:
    """Strides (h, w), padding (top, left, bottom, right), dilation (h, w) and groups of an NCHW/OIHW conv2d."""

    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "dilation", tuple(int(s) for s in self.dilation))
        pad = tuple(int(p) for p in self.padding)
        if len(pad) == 2:
            pad = (pad[0], pad[1], pad[0], pad[1])
        object.__setattr__(self, "padding", pad)
        if len(self.strides) != 2 or min(self.strides) < 1:
            raise UnsupportedError(f"conv2d strides must be two positive integers, got {self.strides}")
        if len(self.dilation) != 2 or min(self.dilation) < 1:
            raise UnsupportedError(f"conv2d dilation must be two positive integers, got {self.dilation}")
        if len(pad) != 4 or min(pad) < 0:
            raise UnsupportedError(f"conv2d padding must be four non-negative integers, got {self.padding}")
        if int(self.groups) < 1:
            raise UnsupportedError(f"conv2d groups must be >= 1, got {self.groups}")

    def output_hw(self, h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
        pt, pl, pb, pr = self.padding
        oh = (h + pt + pb - self.dilation[0] * (kh - 1) - 1) // self.strides[0] + 1
        ow = (w + pl + pr - self.dilation[1] * (kw - 1) - 1) // self.strides[1] + 1
        return oh, ow
