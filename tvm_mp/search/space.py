"""The search space: the precisions each layer may take.

A :class:`SearchSpace` holds the model's layers (in :func:`~tvm_mp.layers.list_layers` order) and, per layer, a
tuple of candidate :class:`~tvm_mp.precision.Precision` options. A point of the space is an integer vector
``index`` (one option index per layer); :meth:`SearchSpace.plan` turns it into a
:class:`~tvm_mp.precision.PrecisionPlan`. Every search algorithm in this package works on index vectors.

Options may name a kernel kind (``Precision(2, 4, "bitserial")``): a bit-serial kernel at ``w * a > 4`` costs
more than at ``w2a2`` but can still be cheaper than the packed 8-bit kernel, so it is a real choice.

Options may also be number formats (:mod:`tvm_mp.formats`): reduced-precision floats (``Precision.fp16()``, ...) and
clustered weights (``Precision.clustered(K, a_bits)``), next to integer ones in one space --
``default_options() + format_options()``. Each option belongs to a *family* (:func:`family`: "integer", "float",
"clustered"); :meth:`SearchSpace.neighbours` steps within a family (one bit in w or a; the next float format by
total and mantissa bits, e.g. e5m2 <-> e4m3 <-> bf16 <-> fp16; the next K, e.g. K8 <-> K16 <-> K32) and jumps between
families at the nearest storage footprint (:func:`storage_key`: bits per stored weight and per activation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import PlanError
from ..kinds import KERNEL_KINDS
from ..layers import LayerInfo
from ..precision import VALID_BITS, Precision, PrecisionPlan


def default_options(w_bits: Iterable[int] = VALID_BITS, a_bits: Iterable[int] = VALID_BITS,
                    bitserial_max_product: int = 16) -> tuple[Precision, ...]:
    """Every ``(w, a)`` with the automatic kernel, plus forced bit-serial kernels up to ``w * a`` =
    ``bitserial_max_product`` where the automatic choice would be the packed kernel."""
    out = []
    for w in w_bits:
        for a in a_bits:
            auto = Precision(int(w), int(a))
            out.append(auto)
            if auto.resolved_kind == "packed" and w * a <= bitserial_max_product:
                out.append(Precision(int(w), int(a), "bitserial"))
    return tuple(out)


#: Float formats :func:`format_options` offers by default.
DEFAULT_FLOAT_FORMATS = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")
#: Cluster counts :func:`format_options` offers by default.
DEFAULT_CLUSTERS = (4, 8, 16, 32, 64)
#: Option families.
FAMILIES = ("integer", "float", "clustered")


def format_options(floats: Iterable[str] = DEFAULT_FLOAT_FORMATS, clusters: Iterable[int] = DEFAULT_CLUSTERS,
                   cluster_a_bits: Iterable[int] = (8,)) -> tuple[Precision, ...]:
    """Number-format options to add to integer ones (``default_options() + format_options()``): the named float
    formats (``fp16``, ``bf16``, ``fp8_e4m3``, ``fp8_e5m2`` or any ``eXmY``, see :meth:`Precision.parse`) and
    clustered weights with each K of ``clusters`` at each activation width of ``cluster_a_bits``."""
    out = [Precision.parse(str(name)) for name in floats]
    for name, prec in zip(floats, out):
        if prec.kind != "float":
            raise PlanError(f"format_options(floats=...) takes float format names such as 'fp16', got {name!r}")
    out += [Precision.clustered(int(k), int(a)) for k in clusters for a in cluster_a_bits]
    return tuple(out)


def family(prec: Precision) -> str:
    """"integer", "float" or "clustered"."""
    return prec.kind if prec.kind in ("float", "clustered") else "integer"


def storage_key(prec: Precision) -> tuple[int, int]:
    """(bits per stored weight, bits per activation), each capped at 8: what cross-family jumps compare. Integer
    ``(w, a)``; float formats their 8/16-bit container and total bits; clustered the index width and ``a_bits``."""
    if prec.kind == "float":
        container = 8 if prec.w_bits <= 8 else 16 if prec.w_bits <= 16 else 32
        return min(container, 8), min(prec.a_bits, 8)
    return min(prec.w_bits, 8), min(prec.a_bits, 8)


def canonical(prec: Precision) -> Precision:
    """The same precision with its kernel kind made explicit (so "auto" and its resolved kind compare equal)."""
    return replace(prec, kind=prec.resolved_kind) if prec.kind == "auto" else prec


def is_integer(prec: Precision) -> bool:
    """True for the integer kinds (bit-serial / packed), the ones the bit-based neighbourhoods and dominance use."""
    return prec.resolved_kind in KERNEL_KINDS


def _jumps(c: Precision, canon: Sequence[Precision]) -> list[int]:
    """Options of every other family nearest to ``c`` in :func:`storage_key` (ties: all of them)."""
    here, fam = storage_key(c), family(c)
    out = []
    for other in FAMILIES:
        if other == fam:
            continue
        cands = [j for j, o in enumerate(canon) if family(o) == other]
        if not cands:
            continue
        dist = {j: sum(abs(x - y) for x, y in zip(storage_key(canon[j]), here)) for j in cands}
        best = min(dist.values())
        out += [j for j in cands if dist[j] == best]
    return out


@dataclass(frozen=True)
class SearchSpace:
    """Layers and, per layer, the candidate precisions (see module docstring)."""

    layers: tuple[LayerInfo, ...]
    options: tuple[tuple[Precision, ...], ...]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise PlanError("the search space has no layers: the model has no conv2d/dense layer to quantize")
        if not all(isinstance(layer, LayerInfo) for layer in layers):
            raise PlanError("SearchSpace.layers must be LayerInfo objects (from tvm_mp.list_layers(mod))")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise PlanError(f"layer names in a search space must be unique, got {names}")
        options = tuple(tuple(o) for o in self.options)
        if len(options) != len(layers):
            raise PlanError(f"SearchSpace has {len(layers)} layers but {len(options)} option lists: give one per layer")
        for layer, opts in zip(layers, options):
            if not opts:
                raise PlanError(f"layer {layer.name!r} has no candidate precision: give at least one")
            if not all(isinstance(o, Precision) for o in opts):
                raise PlanError(f"options of layer {layer.name!r} must be Precision objects, e.g. Precision(4, 4)")
            canon = [canonical(o) for o in opts]
            if len(set(canon)) != len(canon):
                raise PlanError(f"layer {layer.name!r} lists the same precision twice; give each option once")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "options", options)

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def build(cls, layers: Sequence[LayerInfo], options: Sequence[Precision] | Mapping[str, Sequence[Precision]]
              | None = None) -> "SearchSpace":
        """A space over ``layers``; ``options`` is one list for every layer, a mapping per layer name, or None
        for :func:`default_options`."""
        if not isinstance(layers, Sequence) or isinstance(layers, str):
            raise PlanError(f"SearchSpace.build takes the layers (tvm_mp.list_layers(mod)), not a "
                            f"{type(layers).__name__}: build it with SearchSpace.build(tvm_mp.list_layers(mod))")
        layers = tuple(layers)
        if options is None:
            options = default_options()
        if isinstance(options, Mapping):
            missing = [layer.name for layer in layers if layer.name not in options]
            if missing:
                raise PlanError(f"no options given for layer(s) {missing}: the mapping needs every layer name")
            return cls(layers, tuple(tuple(options[layer.name]) for layer in layers))
        opts = tuple(options)
        return cls(layers, tuple(opts for _ in layers))

    # ---- queries ---------------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def sizes(self) -> np.ndarray:
        """Number of options of each layer (read-only)."""
        out = np.array([len(o) for o in self.options], dtype=np.int64)
        out.setflags(write=False)
        return out

    @cached_property
    def max_options(self) -> int:
        return int(self.sizes.max())

    def plan(self, index: Sequence[int]) -> PrecisionPlan:
        """The plan of an index vector."""
        index = self._check_index(index)
        return PrecisionPlan({layer.name: self.options[i][int(k)] for i, (layer, k) in
                              enumerate(zip(self.layers, index))}, layers=self.names)

    def key(self, index: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(k) for k in self._check_index(index))

    def index_of(self, plan: PrecisionPlan) -> np.ndarray:
        """The index vector of a plan that sets every layer to one of its options."""
        out = np.zeros(self.n_layers, dtype=np.int64)
        for i, (layer, opts) in enumerate(zip(self.layers, self.options)):
            prec = plan.get(layer.name)
            if prec is None:
                raise PlanError(f"the plan has no precision for layer {layer.name!r}; a search plan sets every layer")
            canon = [canonical(o) for o in opts]
            try:
                out[i] = canon.index(canonical(prec))
            except ValueError:
                raise PlanError(f"{prec} is not an option of layer {layer.name!r}; its options are "
                                f"{', '.join(map(str, opts))}") from None
        return out

    def uniform_index(self, precision: Precision) -> np.ndarray | None:
        """The index vector of the uniform plan at ``precision``, or None if some layer lacks that option."""
        target = canonical(precision)
        out = []
        for opts in self.options:
            canon = [canonical(o) for o in opts]
            if target not in canon:
                return None
            out.append(canon.index(target))
        return np.array(out, dtype=np.int64)

    def uniform_precisions(self) -> list[Precision]:
        """Precisions that every layer has as an option (in the first layer's order)."""
        common = set(canonical(o) for o in self.options[0])
        for opts in self.options[1:]:
            common &= set(canonical(o) for o in opts)
        return [o for o in self.options[0] if canonical(o) in common]

    def _check_index(self, index) -> np.ndarray:
        arr = np.asarray(index)
        if arr.shape != (self.n_layers,) or not np.issubdtype(arr.dtype, np.integer):
            raise PlanError(f"an index vector has one integer per layer ({self.n_layers}), got {index!r}")
        if (arr < 0).any() or (arr >= self.sizes).any():
            raise PlanError(f"index {arr.tolist()} is out of range; layer option counts are {self.sizes.tolist()}")
        return arr

    # ---- neighbourhoods --------------------------------------------------------------------------------------
    def neighbours(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Per layer and option: the options one step away. Integer options: one bit more or less in w or a, same
        kernel rule, or the same bits with the other kernel kind. Float formats: the previous and next float option
        of the layer ordered by (total bits, mantissa bits). Clustered: the previous and next K at the same
        ``a_bits`` and the next ``a_bits`` at the same K. Plus, when a layer has options of several families, a
        jump from each option to the option(s) of every other family nearest in :func:`storage_key` (L1
        distance). Used by the annealer's local moves; integer-only spaces are unchanged by the formats."""
        out = []
        for opts in self.options:
            canon = [canonical(o) for o in opts]
            where = {c: j for j, c in enumerate(canon)}
            floats = sorted((j for j, c in enumerate(canon) if c.kind == "float"),
                            key=lambda j: (canon[j].w_bits, canon[j].man_bits, canon[j].exp_bits, j))
            fams = {family(c) for c in canon}
            per = []
            for j0, c in enumerate(canon):
                near: list[int] = []
                if is_integer(c):
                    near += self._integer_steps(c, where)
                elif c.kind == "float":
                    k = floats.index(j0)
                    near += [floats[k2] for k2 in (k - 1, k + 1) if 0 <= k2 < len(floats)]
                else:
                    near += self._cluster_steps(c, canon)
                if len(fams) > 1:
                    near += [j for j in _jumps(c, canon) if j not in near]
                per.append(tuple(near))
            out.append(tuple(per))
        return tuple(out)

    @staticmethod
    def _integer_steps(c: Precision, where: Mapping[Precision, int]) -> list[int]:
        near = []
        for dw, da in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            w, a = c.w_bits + dw, c.a_bits + da
            if w not in VALID_BITS or a not in VALID_BITS:
                continue
            for kind in (c.kind, Precision(w, a).resolved_kind):
                j = where.get(Precision(w, a, kind))
                if j is not None and j not in near:
                    near.append(j)
        other = Precision(c.w_bits, c.a_bits, "packed" if c.kind == "bitserial" else "bitserial")
        if other in where:
            near.append(where[other])
        return near

    @staticmethod
    def _cluster_steps(c: Precision, canon: Sequence[Precision]) -> list[int]:
        same_a = sorted((j for j, o in enumerate(canon) if o.kind == "clustered" and o.a_bits == c.a_bits),
                        key=lambda j: canon[j].clusters)
        same_k = sorted((j for j, o in enumerate(canon) if o.kind == "clustered" and o.clusters == c.clusters),
                        key=lambda j: canon[j].a_bits)
        near = []
        for chain in (same_a, same_k):
            k = next(i for i, j in enumerate(chain) if canon[j] == c)
            near += [chain[k2] for k2 in (k - 1, k + 1) if 0 <= k2 < len(chain) and chain[k2] not in near]
        return near

    def restricted(self, keep: Sequence[Sequence[int]]) -> "SearchSpace":
        """A space keeping, per layer, the options at the given indices."""
        if len(keep) != self.n_layers:
            raise PlanError("restricted() needs one list of option indices per layer")
        return SearchSpace(self.layers, tuple(tuple(self.options[i][j] for j in k) for i, k in enumerate(keep)))

    def to_dict(self) -> dict:
        return {"layers": list(self.names), "options": {layer.name: [str(o) for o in opts]
                                                        for layer, opts in zip(self.layers, self.options)}}
