"""Modelled energy per operation of every number format, and of a PE with a small associative memory.

Every figure here is *modelled* (operation counts x energy per operation), never measured. Source of the base
figures: the 45 nm numbers of the ISSCC 2014 keynote "Computing's energy problem (and what we can do about it)":
8-bit integer add 0.03 pJ, multiply 0.2 pJ; 32-bit integer add 0.1 pJ, multiply 3.1 pJ; fp16 add 0.4 pJ,
multiply 1.1 pJ; fp32 add 0.9 pJ, multiply 3.7 pJ; a 32-bit read from an 8 KB SRAM 5 pJ (10 pJ per 64 bits).
Derived quantities, each a documented assumption:

* integer multiply of ``w x a`` bits: an array multiplier's energy grows with the number of partial-product bits,
  ``0.2 pJ * w * a / 64``; an integer add of ``b`` bits: ``0.1 pJ * b / 32``. Integer MAC = multiply + int32 add.
* float multiply of an eXmY format: ``k * (m + 1)**2 + e * 0.1/32 pJ + overhead`` -- the significand multiplier
  grows with the square of its width, the exponent adder linearly; ``k`` and the fixed overhead (normalization,
  rounding) are fitted to the fp16 and fp32 points above (so fp16 1.1 pJ and fp32 3.7 pJ are reproduced exactly;
  bf16 and fp8 figures are extrapolations). A float-format MAC is that multiply plus an **fp32 add** (0.9 pJ):
  the layer accumulates in float32 (:mod:`tvm_mp.quantize.floats`).
* SRAM read energy of a memory of ``C`` bytes: ``5 pJ * bits/32 * sqrt(C / 8 KB)`` -- the square-root rule that the
  keynote's own figures follow (8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ per 64 bits). It scales the 8 KB figure
  down to the few dozen bytes of an associative memory.
* associative memory (CAM) of ``S`` entries with ``t``-bit keys: one search compares the key with every entry;
  by default it is priced as reading all ``S * t`` key bits at the scaled SRAM per-bit energy (times
  ``cam_search_factor``, 1 by default) -- conservative, about 8 fJ per bit for 16 entries and growing with the
  array. ``cam_pj_per_bit`` replaces that with a fixed energy per key bit and search (CAM circuits in the
  literature are of the order of 1 fJ, i.e. 0.001 pJ, per bit and search). A hit reads the product
  (``product_bits``) from an ``S``-entry table; a miss multiplies. Both pay the search and the accumulation.

Memory per layer: each stored weight bit and each input-activation bit is read once per inference from an 8 KB-class
on-chip SRAM (0.156 pJ per bit); outputs are the next layer's inputs. Good for *comparing* formats, not for
predicting a battery's life.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import Error
from ..layers import LayerInfo
from ..precision import Precision, index_bits

PJ_PER_UJ = 1e6


class EnergyModelError(Error):
    """An energy figure or a query of the format energy model is invalid."""


@dataclass(frozen=True)
class EnergyFigures:
    """Base energies in pJ (defaults: 45 nm, ISSCC 2014 keynote) and the SRAM reference size in bytes."""

    int8_mul_pj: float = 0.2
    int32_add_pj: float = 0.1
    fp16_mul_pj: float = 1.1
    fp32_mul_pj: float = 3.7
    fp32_add_pj: float = 0.9
    sram_read_pj_per_32bit: float = 5.0
    sram_reference_bytes: int = 8192
    cam_search_factor: float = 1.0
    cam_pj_per_bit: float | None = None  # None: derived from the scaled SRAM figure (see module docstring)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "cam_pj_per_bit" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise EnergyModelError(f"EnergyFigures.{f.name}={value!r}: give a finite, positive number")

    def to_dict(self) -> dict:
        return asdict(self)

    # -- per-operation energies ------------------------------------------------------------------------------------

    def int_add_pj(self, bits: int) -> float:
        return self.int32_add_pj * bits / 32.0

    def int_mul_pj(self, w_bits: int, a_bits: int) -> float:
        return self.int8_mul_pj * w_bits * a_bits / 64.0

    def _float_fit(self) -> tuple[float, float, float]:
        """(k per significand bit squared, pJ per exponent bit, fixed overhead) fitted to fp16 and fp32."""
        per_exp = self.int_add_pj(1)
        k = (self.fp32_mul_pj - self.fp16_mul_pj - (8 - 5) * per_exp) / (24**2 - 11**2)
        overhead = self.fp16_mul_pj - k * 11**2 - 5 * per_exp
        return k, per_exp, overhead

    def float_mul_pj(self, exp_bits: int, man_bits: int) -> float:
        k, per_exp, overhead = self._float_fit()
        return k * (man_bits + 1) ** 2 + per_exp * exp_bits + overhead

    def sram_read_pj(self, bits: float, capacity_bytes: float | None = None) -> float:
        """Energy of reading ``bits`` from a memory of ``capacity_bytes`` (default: the 8 KB reference)."""
        cap = self.sram_reference_bytes if capacity_bytes is None else max(float(capacity_bytes), 1.0)
        return self.sram_read_pj_per_32bit * bits / 32.0 * math.sqrt(cap / self.sram_reference_bytes)


@dataclass(frozen=True)
class OpEnergy:
    """Energy of one multiply-accumulate of a format: ``mac_pj = mul_pj + add_pj``."""

    mul_pj: float
    add_pj: float

    @property
    def mac_pj(self) -> float:
        return self.mul_pj + self.add_pj


def op_energy(precision: Precision | None, figures: EnergyFigures | None = None) -> OpEnergy:
    """Per-MAC energy of a layer's format (None = fp32). A clustered layer without an associative memory multiplies
    its int8 centroid by the activation code (see :class:`AssociativePE` for the table look-up PE)."""
    fig = figures or EnergyFigures()
    if precision is None:
        return OpEnergy(fig.fp32_mul_pj, fig.fp32_add_pj)
    if not isinstance(precision, Precision):
        raise EnergyModelError(f"op_energy needs a Precision or None (fp32), got {type(precision).__name__}")
    if precision.kind == "float":
        return OpEnergy(fig.float_mul_pj(precision.exp_bits, precision.man_bits), fig.fp32_add_pj)
    if precision.kind == "clustered":
        return OpEnergy(fig.int_mul_pj(8, precision.a_bits), fig.int32_add_pj)
    return OpEnergy(fig.int_mul_pj(precision.w_bits, precision.a_bits), fig.int32_add_pj)


@dataclass(frozen=True)
class AssociativePE:
    """A processing element with an ``entries``-entry associative memory of (weight, activation) -> product.

    ``key_bits``: bits of a key (weight index + matched activation bits); ``product_bits``: width of a stored
    product; ``multiply``: the per-MAC energy of the PE without the memory (its multiplier and accumulator).
    """

    entries: int
    key_bits: int
    product_bits: int
    multiply: OpEnergy
    figures: EnergyFigures = EnergyFigures()

    def __post_init__(self) -> None:
        for name in ("entries", "key_bits", "product_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EnergyModelError(f"AssociativePE.{name}={value!r}: give a positive integer")

    @classmethod
    def for_clustered(cls, precision: Precision, entries: int, top_bits: int | None = None,
                      figures: EnergyFigures | None = None, multiplier: str = "integer") -> "AssociativePE":
        """The PE of a clustered layer: keys are (cluster index, top ``top_bits`` of the code; all bits if None).

        ``multiplier="integer"``: the PE multiplies the int8 centroid by the code (products ``8 + a_bits`` bits,
        int32 accumulation) -- the kernels of this package. ``"fp32"``: an fp32 multiply-add PE whose stored
        products are fp32 (the setting of associative-memory proposals for float networks).
        """
        if precision.kind != "clustered":
            raise EnergyModelError(f"{precision} is not clustered: use Precision.clustered(k, a_bits)")
        if multiplier not in ("integer", "fp32"):
            raise EnergyModelError(f"multiplier={multiplier!r}: use 'integer' or 'fp32'")
        fig = figures or EnergyFigures()
        t = precision.a_bits if top_bits is None else top_bits
        if multiplier == "fp32":
            return cls(entries, index_bits(precision.clusters) + t, 32, op_energy(None, fig), fig)
        return cls(entries, index_bits(precision.clusters) + t, 8 + precision.a_bits, op_energy(precision, fig), fig)

    @property
    def search_pj(self) -> float:
        bits = self.entries * self.key_bits
        if self.figures.cam_pj_per_bit is not None:
            return self.figures.cam_search_factor * self.figures.cam_pj_per_bit * bits
        return self.figures.cam_search_factor * self.figures.sram_read_pj(bits, bits / 8.0)

    @property
    def table_read_pj(self) -> float:
        return self.figures.sram_read_pj(self.product_bits, self.entries * self.product_bits / 8.0)

    @property
    def hit_pj(self) -> float:
        """Search, read the stored product, accumulate."""
        return self.search_pj + self.table_read_pj + self.multiply.add_pj

    @property
    def miss_pj(self) -> float:
        """Search, multiply, accumulate."""
        return self.search_pj + self.multiply.mac_pj

    def mac_pj(self, hit_rate: float) -> float:
        if not (0.0 <= hit_rate <= 1.0):
            raise EnergyModelError(f"hit_rate={hit_rate} is not a fraction in [0, 1]")
        return hit_rate * self.hit_pj + (1.0 - hit_rate) * self.miss_pj

    def saved_fraction(self, hit_rate: float, baseline: OpEnergy | None = None) -> float:
        """1 - energy per MAC with the memory / energy per MAC of ``baseline`` (default: this PE's multiplier)."""
        base = (baseline or self.multiply).mac_pj
        return 1.0 - self.mac_pj(hit_rate) / base


@dataclass(frozen=True)
class LayerEnergy:
    """Modelled energy of one layer per inference: compute (MACs) and memory (weights and input read once)."""

    name: str
    format: str
    macs: int
    compute_pj: float
    memory_pj: float

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.memory_pj

    @property
    def energy_uj(self) -> float:
        return self.total_pj / PJ_PER_UJ


def storage_bits(weight_count: int, precision: Precision | None) -> int:
    """Bits of ``weight_count`` weights as stored (float formats: their container; clustered: ``ceil(log2 K)``-bit
    indices + K int8 centroids; integer: ``w_bits`` per weight; None: fp32)."""
    count = int(weight_count)
    if precision is None:
        return 32 * count
    if precision.kind == "float":
        total = precision.w_bits
        container = 8 if total <= 8 else 16 if total <= 16 else 32
        return container * count
    if precision.kind == "clustered":
        return index_bits(precision.clusters) * count + 8 * precision.clusters
    return precision.w_bits * count


def weight_storage_bits(info: LayerInfo, precision: Precision | None) -> int:
    """Bits of the layer's weights as stored (:func:`storage_bits` of ``info.weight_count``)."""
    return storage_bits(info.weight_count, precision)


def stored_weight_bytes(info, precision: Precision) -> int:
    """Bytes of a float-format or clustered layer's weight constants exactly as the compiled artifact stores them
    (what ``CompiledModel.report`` counts): float formats ``weight_storage_bits / 8`` (8/16/32-bit containers);
    clustered the packed index stream -- ``ceil(count * index_bits / 32) + 1`` uint32 words, the extra word lets
    the kernel always load two words -- plus the ``K`` int8 centroids. ``info``: anything with ``weight_count``
    (a :class:`~tvm_mp.layers.LayerInfo` or a cost-model ``Workload``). Integer layers: their storage depends on
    the kernel kind, see :func:`tvm_mp.search.costs.weight_bytes`."""
    if not isinstance(precision, Precision) or precision.kind not in ("float", "clustered"):
        raise EnergyModelError(f"stored_weight_bytes covers float-format and clustered layers, got {precision}: "
                               "integer storage depends on the kernel (tvm_mp.search.costs.weight_bytes)")
    if precision.kind == "float":
        return storage_bits(info.weight_count, precision) // 8
    words = -(-int(info.weight_count) * index_bits(precision.clusters) // 32) + 1
    return 4 * words + precision.clusters


def activation_bits(precision: Precision | None) -> int:
    if precision is None:
        return 32
    return precision.a_bits


def datapath_energy_pj(macs: int, input_elements: int, weight_count: int, precision: Precision | None,
                       figures: EnergyFigures | None = None, mac_pj: float | None = None) -> tuple[float, float]:
    """``(compute_pj, memory_pj)`` of one layer on a datapath that computes in the layer's own format: MACs x
    :func:`op_energy` (or ``mac_pj``) and one on-chip SRAM read of the stored weight bits and of the input
    activation bits. The one formula behind :func:`layer_energy` and the search's
    :class:`~tvm_mp.cost_models.analytical.DatapathModel`, for every kind alike."""
    fig = figures or EnergyFigures()
    per_mac = op_energy(precision, fig).mac_pj if mac_pj is None else float(mac_pj)
    bits = storage_bits(weight_count, precision) + int(input_elements) * activation_bits(precision)
    return int(macs) * per_mac, fig.sram_read_pj(bits)


def layer_energy(info: LayerInfo, precision: Precision | None, figures: EnergyFigures | None = None,
                 mac_pj: float | None = None) -> LayerEnergy:
    """Modelled energy of ``info`` in ``precision`` (None = fp32). ``mac_pj`` overrides the per-MAC energy (e.g.
    :meth:`AssociativePE.mac_pj` of a measured hit rate)."""
    compute, memory = datapath_energy_pj(info.macs, int(np.prod(info.input_shape)), info.weight_count, precision,
                                         figures, mac_pj)
    name = "fp32" if precision is None else str(precision)
    return LayerEnergy(info.name, name, int(info.macs), compute, memory)
