"""Synthetic records for model tests: a known, non-linear latency law (no timing noise, no TVM build)."""

from __future__ import annotations

import numpy as np

from tvm_mp.cost_models.base import Workload
from tvm_mp.cost_models.features import KernelCounter
from tvm_mp.measure.records import Record
from tvm_mp.workload import ConvParams


def synthetic_workloads(rng: np.random.Generator, n_layers: int, configs: int, target: str = "llvm",
                        device: str = "host") -> list[tuple[Workload, str]]:
    out = []
    for layer in range(n_layers):
        c, oc = int(rng.choice([4, 8, 16, 32, 64])), int(rng.choice([8, 16, 32, 64]))
        h = int(rng.integers(4, 24))
        k = int(rng.choice([1, 3]))
        origin = f"model{layer % 3}/conv2d_{layer}" if layer % 2 else "random"
        for _ in range(configs):
            wl = Workload("conv2d", (1, c, h, h), (oc, c, k, k), int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                          str(rng.choice(["bitserial", "packed"])), ConvParams((1, 1), (k // 2,) * 4),
                          str(rng.choice(["acc", "float", "requant"])), target=target, device=device)
            out.append((wl, origin))
    return out


def latency_law(workloads, counter: KernelCounter) -> np.ndarray:
    """ms: per-point costs, with a vector-friendliness bonus for channel counts divisible by 16."""
    ev = counter.events(workloads)
    c = np.array([w.input_shape[1] for w in workloads])
    vec = np.where(c % 16 == 0, 0.6, 1.0)
    ns = (2000 + 0.3 * ev["points_bitpack"] + 1.2 * ev["points_popcount_acc"] * vec
          + 4.0 * ev["points_packed_acc"] * vec + 2.0 * ev["points_epilogue"])
    return ns / 1e6


def synthetic_records(seed: int = 0, n_layers: int = 40, configs: int = 8, energy: bool = False,
                      target: str | None = None, device: str | None = None) -> list[Record]:
    """``energy``: records carry an energy figure (the accelerator simulator's target unless ``target`` says
    otherwise, e.g. a board with a power meter)."""
    rng = np.random.default_rng(seed)
    counter = KernelCounter()
    target, device = (target or ("accel" if energy else "llvm"), device or ("accel-sim" if energy else "host"))
    pairs = synthetic_workloads(rng, n_layers, configs, target, device)
    seen, records = set(), []
    wls = [w for w, _ in pairs]
    lat = latency_law(wls, counter)
    for (wl, origin), t in zip(pairs, lat):
        if wl.key in seen:
            continue
        seen.add(wl.key)
        e = wl.macs * (0.2 + 0.05 * wl.w_bits * wl.a_bits) * 1e-6 if energy else None
        records.append(Record(wl, (float(t),), "simulator" if energy else "local", e,
                              "simulated" if energy else None, meta={"origins": [origin]}))
    return records
