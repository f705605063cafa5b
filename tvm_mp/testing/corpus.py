"""Real pretrained CNNs that ship inside PyPI packages: the corpus of the real-model tests and benchmarks.

Each model is located inside its installed package (``importlib.util.find_spec``; nothing is imported from the
package and nothing is downloaded). :func:`model` returns the ONNX path and the small fixed input shapes the tests
compile at; a missing package raises :class:`CorpusUnavailable` (a one-line message saying what to install),
which tests turn into a skip.

The models (``rapidocr-onnxruntime`` 1.4.4, Apache-2.0, the PaddleOCR PP-OCR models converted to ONNX; installed by
the ``test`` extra -- ``pip install rapidocr-onnxruntime==1.4.4 --no-deps`` is enough for the model files):

========  ===============================================  ======================================================
name      model                                            op mix
========  ===============================================  ======================================================
``cls``   text-orientation classifier (0 / 180 degrees),   53 conv (MobileNetV3-style: depthwise, squeeze-excite,
          ``ch_ppocr_mobile_v2.0_cls_infer.onnx``           hard-sigmoid) + 1 dense, softmax
``det``   text detector (DB), ``ch_PP-OCRv4_det_infer``     62 conv, Resize (nearest), ConvTranspose, sigmoid map
``rec``   text recognizer (SVTR-LCNet, CTC over 6,625       38 conv + an attention head: MatMul, Softmax, Pow,
          characters), ``ch_PP-OCRv4_rec_infer.onnx``       ReduceMean (layer norm), Slice
========  ===============================================  ======================================================
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Error

PACKAGE = "rapidocr_onnxruntime"
PIP_NAME = "rapidocr-onnxruntime==1.4.4"


class CorpusUnavailable(Error):
    """The package holding a corpus model is not installed (tests skip on it)."""


@dataclass(frozen=True)
class CorpusModel:
    """One corpus model: its ONNX file inside the package and the input shapes the tests compile at."""

    name: str
    path: Path
    shapes: dict  # input name -> fixed shape (batch 1, small spatial size)
    description: str


#: name -> (file inside the package, input shapes, description). Sizes: the classifier's native input; the
#: recognizer at its native height and width 64 (8 CTC time steps: its horizontal stride is 8); the detector at
#: 64x64 (a multiple of 32, its total stride). Small, so each compiles in well under a minute.
MODELS = {
    "cls": ("models/ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": (1, 3, 48, 192)},
            "text-orientation classifier (2 classes: 0 / 180 degrees)"),
    "det": ("models/ch_PP-OCRv4_det_infer.onnx", {"x": (1, 3, 64, 64)},
            "text detector (DB): per-pixel text probability"),
    "rec": ("models/ch_PP-OCRv4_rec_infer.onnx", {"x": (1, 3, 48, 64)},
            "text recognizer (CTC over 6,625 characters)"),
}


def package_dir() -> Path:
    """Directory of the installed package holding the corpus models (its code is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusUnavailable(f"the real-model corpus needs the package {PIP_NAME}: "
                                f"pip install {PIP_NAME} --no-deps")
    return Path(list(spec.submodule_search_locations)[0])


def model(name: str, shapes: dict | None = None) -> CorpusModel:
    """The corpus model ``name`` (see :data:`MODELS`); ``shapes`` overrides its input shapes."""
    if name not in MODELS:
        raise Error(f"unknown corpus model {name!r}; the corpus has {', '.join(MODELS)}")
    rel, default_shapes, description = MODELS[name]
    path = package_dir() / rel
    if not path.is_file():
        raise CorpusUnavailable(f"{PIP_NAME} is installed but lacks {rel}: reinstall it (pip install --force-reinstall "
                                f"{PIP_NAME} --no-deps)")
    return CorpusModel(name, path, dict(shapes or default_shapes), description)


def load(name: str, shapes: dict | None = None):
    """``(tvm.IRModule, CorpusModel)``: the corpus model imported with :func:`tvm_mp.load_onnx` at its shapes."""
    from ..frontend import load_onnx

    m = model(name, shapes)
    return load_onnx(m.path, shapes=m.shapes), m


def text_images(n: int, shape: tuple[int, ...], seed: int = 0, rotate: bool = False) -> tuple:
    """``(images, strings)``: ``n`` renderings of random digit strings, dark on a light background, as the models
    take them (NCHW float32, ``(pixel / 255 - 0.5) / 0.5``), and the strings drawn. ``rotate`` turns every second
    image by 180 degrees (the classifier's second class). Uses Pillow's built-in font: no file, no download."""
    from PIL import Image, ImageDraw, ImageFont

    _, _, h, w = shape
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=max(8, int(h * 0.6)))
    images, strings = [], []
    for i in range(n):
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, max(3, w // max(1, h // 2))))))
        shade = int(rng.integers(200, 256))
        im = Image.new("RGB", (w, h), (shade, shade, shade))
        ImageDraw.Draw(im).text((int(rng.integers(0, 4)), int(h * 0.1)), text, fill=tuple(int(v) for v in
                                rng.integers(0, 60, 3)), font=font)
        if rotate and i % 2:
            im = im.rotate(180)
        images.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        strings.append(text)
    return ((np.stack(images) - 0.5) / 0.5).astype(np.float32), strings
