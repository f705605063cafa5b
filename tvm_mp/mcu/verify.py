"""Build, run and check: layer batches and whole networks on the emulated Cortex-M, against the NumPy reference.

One firmware holds many cases (each QEMU boot costs ~0.1 s and each build ~1 s): every case's input and expected
output are C arrays, the firmware compares bit for bit and prints one line per case (see
:mod:`tvm_mp.mcu.harness`), and dumps its raw outputs so the Python side can compare them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputShapeError, PlanError
from .cgen import c_array
from .harness import Check, main_source
from .kernels import PRELUDE, McuLayer, format_helpers, layer_formats
from .network import McuNetwork, emit_network
from .runner import Firmware, QemuRun, build_firmware, run_on_qemu


def _decode(raw: bytes, expected: np.ndarray) -> np.ndarray:
    return np.frombuffer(raw, dtype=expected.dtype).reshape(expected.shape)


@dataclass(frozen=True, eq=False)
class McuResult:
    """Outputs the firmware computed (decoded from its dump), what they must equal, and the run's details."""

    firmware: Firmware
    run: QemuRun
    names: tuple[str, ...]
    expected: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]
    network: McuNetwork | None = None
    layers: tuple[McuLayer, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Every check passed on the device and every dumped output equals the reference bit for bit."""
        checks = self.run.checks
        device_ok = all(n in checks and checks[n].ok for n in self.names)
        return device_ok and all(_same_bits(o, e) for o, e in zip(self.outputs, self.expected))

    def failures(self) -> list[str]:
        checks = self.run.checks
        out = []
        for n, o, e in zip(self.names, self.outputs, self.expected):
            c = checks.get(n)
            if c is None or not c.ok or not _same_bits(o, e):
                bad = -1  # unknown: the output was not dumped
                if o.shape == e.shape:
                    view = np.uint8 if e.dtype == np.uint8 else np.uint32
                    bad = int(np.sum(o.view(view) != e.view(view)))
                out.append(f"{n}: {bad} element(s) differ; device says {c}")
        return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    view = np.uint8 if a.dtype == np.uint8 else np.uint32
    return bool(np.array_equal(a.view(view), b.view(view)))


def _finish(fw: Firmware, run: QemuRun, checks: list[Check], **extra) -> McuResult:
    dumps = run.dumps
    outputs = []
    for c in checks:
        raw = dumps.get(c.name, b"")
        if len(raw) != c.expected.nbytes:
            outputs.append(np.zeros(0, dtype=c.expected.dtype))
        else:
            outputs.append(_decode(raw, c.expected))
    return McuResult(fw, run, tuple(c.name for c in checks), tuple(c.expected for c in checks), tuple(outputs),
                     **extra)


def layer_sources(cases: Sequence[tuple[McuLayer, np.ndarray]], dump: bool = True,
                  expected: dict | None = None) -> tuple[dict, list[Check]]:
    """``(sources, checks)`` of a firmware computing every ``(layer, input codes)`` case once.

    ``expected`` (name -> array) replaces the reference output of a case (tests use it to check that a wrong
    expectation is caught).
    """
    names = [layer.name for layer, _ in cases]
    if len(set(names)) != len(names):
        raise PlanError("layer names in one firmware must be unique")
    code = [PRELUDE] + [format_helpers(f) for f in layer_formats([layer for layer, _ in cases])]
    checks = []
    for layer, codes in cases:
        codes = np.asarray(codes)
        if codes.shape != layer.input_shape:
            raise InputShapeError(f"layer {layer.name}: input codes of shape {codes.shape}, expected "
                                  f"{layer.input_shape}")
        if codes.dtype != np.uint8:
            raise InputShapeError(f"layer {layer.name}: input codes must be uint8, got {codes.dtype}")
        fn = f"k_{layer.name}"
        code.append(layer.c_source(fn))
        code.append(c_array(f"{fn}_x", "uint8_t", codes))
        want = (expected or {}).get(layer.name)
        checks.append(Check(layer.name, f"    {fn}({fn}_x, {layer.name}_y);", f"{layer.name}_y", layer.out_ctype,
                            layer.reference(codes) if want is None else want))
    return {"main.c": main_source(checks, "".join(code), dump=dump)}, checks


def run_layers(cases: Sequence[tuple[McuLayer, np.ndarray]], target: str = "cortex-m3",
               workdir: str | Path | None = None, timeout_s: float = 60.0, count_instructions: bool = False,
               expected: dict | None = None) -> McuResult:
    """Build one firmware for all ``(layer, input codes)`` cases, run it, compare with :meth:`McuLayer.reference`
    (or ``expected[name]`` where given)."""
    sources, checks = layer_sources(cases, expected=expected)
    fw = build_firmware(sources, workdir, target)
    run = run_on_qemu(fw, timeout_s=timeout_s, count_instructions=count_instructions)
    return _finish(fw, run, checks, layers=tuple(layer for layer, _ in cases))


def reference_outputs(quantized_module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The NumPy reference (``CompiledModel.reference``) of each input."""
    from ..quantize.interpreter import Interpreter

    mod = getattr(quantized_module, "quantized_module", quantized_module)
    return [np.asarray(Interpreter(mod, quantized=True).run([np.asarray(x, dtype=np.float32)])) for x in inputs]


def network_sources(network: McuNetwork, inputs: Sequence[np.ndarray], expected: Sequence[np.ndarray],
                    dump: bool = True) -> tuple[dict, list[Check]]:
    """``(sources, checks)`` of a firmware running ``net_run`` on each input and checking its output."""
    decl = [network.declaration()]
    checks = []
    for k, (x, want) in enumerate(zip(inputs, expected)):
        x = np.asarray(x, dtype=np.float32)
        if x.shape != network.input_shape:
            raise InputShapeError(f"network input {k} has shape {x.shape}, expected {network.input_shape}")
        want = np.asarray(want)
        if want.shape != network.output_shape:
            raise InputShapeError(f"expected output {k} has shape {want.shape}, the network gives "
                                  f"{network.output_shape}")
        decl.append(c_array(f"net_in_{k}", "float", x))
        checks.append(Check(f"sample_{k}", f"    net_run(net_in_{k}, sample_{k}_y);", f"sample_{k}_y",
                            network.output_ctype, want))
    return {"net.c": network.c_source(), "main.c": main_source(checks, "".join(decl), dump=dump)}, checks


def run_network(model, inputs: Sequence[np.ndarray], word_bits: int = 32, target: str = "cortex-m3",
                workdir: str | Path | None = None, timeout_s: float = 120.0, count_instructions: bool = False,
                expected: Sequence[np.ndarray] | None = None) -> McuResult:
    """Emit ``model`` (``CompiledModel`` or its quantized module), run it on each input under QEMU, and compare
    with the NumPy reference of the same plan (computed here unless ``expected`` is given)."""
    network = emit_network(model, word_bits=word_bits)
    inputs = [np.asarray(x, dtype=np.float32).reshape(network.input_shape) for x in inputs]
    want = list(expected) if expected is not None else reference_outputs(model, inputs)
    sources, checks = network_sources(network, inputs, want)
    fw = build_firmware(sources, workdir, target)
    run = run_on_qemu(fw, timeout_s=timeout_s, count_instructions=count_instructions)
    return _finish(fw, run, checks, network=network)
