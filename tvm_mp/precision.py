"""Per-layer precision and precision plans: frozen, self-validating value types.

This module is at the bottom of the package: it imports nothing else of tvm-mp except the errors and the kinds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from .errors import PlanError
from .kinds import KERNEL_KINDS, PRECISION_KINDS

#: Bit-widths a layer may use for integer weights and activations.
VALID_BITS = tuple(range(1, 9))
#: Integer kernel kinds. ``auto`` picks ``bitserial`` when ``w_bits * a_bits <= BITSERIAL_MAX_PRODUCT`` else
#: ``packed``.
INTEGER_KINDS = ("auto",) + KERNEL_KINDS
#: Every kind: the integer ones, ``float`` (a reduced-precision floating-point format, see
#: :mod:`tvm_mp.quantize.floats`) and ``clustered`` (weights shared among K values, products from a table, see
#: :mod:`tvm_mp.quantize.clustering`).
KINDS = PRECISION_KINDS
#: Bit-serial work grows with w_bits * a_bits (one AND+popcount per pair of bit-planes), packed-integer work does
#: not; at or below this product the bit-serial kernel needs fewer word operations than an 8-bit MAC per element.
BITSERIAL_MAX_PRODUCT = 4
#: Exponent widths of a float format. Up to 8: every value of the format is a float32 value.
VALID_EXP_BITS = tuple(range(2, 9))
#: Mantissa widths of a float format. Up to 11: the product of two such values (12-bit significands) is exact in
#: float32's 24-bit significand, which makes the float kernels bit-exact whether or not LLVM contracts to FMA.
VALID_MAN_BITS = tuple(range(0, 12))
#: Number of shared weight values of a clustered layer.
VALID_CLUSTERS = tuple(range(2, 65))
#: Named float formats: name -> (exp_bits, man_bits, finite).
FLOAT_PRESETS = {
    "fp16": (5, 10, False),
    "bf16": (8, 7, False),
    "fp8_e4m3": (4, 3, True),
    "fp8_e5m2": (5, 2, False),
}

_PARSE_HINT = ("write it like 'w4a8', 'w2a2/bitserial', 'fp16', 'bf16', 'fp8_e4m3', 'fp8_e5m2', 'e3m4' "
               "(any eXmY, 'fn' suffix for no infinities) or 'c16a8' (16 clusters, 8-bit activations)")


def index_bits(clusters: int) -> int:
    """Bits of one cluster index: ``ceil(log2(clusters))`` (at least 1)."""
    return max(1, (int(clusters) - 1).bit_length())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Precision:
    """Number format of one layer.

    Integer kinds (``auto``, ``bitserial``, ``packed``):
        ``w_bits``: weight bits, 1..8. One bit means binary weights {-1, +1} times a per-channel scale; b >= 2
        bits means symmetric integers in [-(2**(b-1) - 1), 2**(b-1) - 1] times a per-channel scale.
        ``a_bits``: activation bits, 1..8; activations are unsigned codes in [0, 2**a_bits - 1] with a zero
        point. ``resolved_kind`` gives the kernel actually used.

    ``kind="float"``: weights and input activations rounded to an IEEE-style format with ``exp_bits`` (2..8) and
        ``man_bits`` (0..11) -- round to nearest even, overflow saturates to the largest finite value, subnormals
        kept -- multiplied and accumulated in float32. ``finite=True`` is the OCP FP8 "fn" layout (no infinities:
        the top exponent holds numbers, only its all-ones mantissa is NaN), as in fp8 e4m3. ``w_bits`` and
        ``a_bits`` both equal the format's total bits ``1 + exp_bits + man_bits``. Use the presets
        :meth:`fp16`, :meth:`bf16`, :meth:`fp8_e4m3`, :meth:`fp8_e5m2` or :meth:`float`.

    ``kind="clustered"``: the layer's weights share ``clusters`` values (k-means; int8 centroids, one scale per
        layer); activations are ``a_bits`` integer codes; each product is read from a table of
        ``clusters x 2**a_bits`` precomputed products. ``w_bits`` is the index width ``ceil(log2(clusters))``.
        Use :meth:`clustered`.
    """

    w_bits: int
    a_bits: int
    kind: str = "auto"
    exp_bits: int | None = None
    man_bits: int | None = None
    finite: bool = False
    clusters: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PlanError(f"Precision.kind={self.kind!r} is unknown: use one of {', '.join(KINDS)}")
        if not isinstance(self.finite, bool):
            raise PlanError(f"Precision.finite={self.finite!r} must be True or False")
        if self.kind == "float":
            self._check_float()
        elif self.kind == "clustered":
            self._check_clustered()
        else:
            self._check_integer()

    def _check_integer(self) -> None:
        for name in ("w_bits", "a_bits"):
            value = getattr(self, name)
            if not _is_int(value) or value not in VALID_BITS:
                raise PlanError(
                    f"Precision.{name}={value!r} is out of range: use an integer from {VALID_BITS[0]} to "
                    f"{VALID_BITS[-1]}"
                    + (" (16-bit and 8-bit floats: Precision.fp16(), .bf16(), .fp8_e4m3(), .fp8_e5m2())"
                       if _is_int(value) and value > VALID_BITS[-1] else "")
                )
        for name in ("exp_bits", "man_bits", "clusters"):
            if getattr(self, name) is not None:
                raise PlanError(f"Precision.{name} belongs to kind 'float' or 'clustered', not {self.kind!r}: "
                                f"use Precision.float(e, m) or Precision.clustered(k, a_bits)")
        if self.finite:
            raise PlanError("Precision.finite applies to float formats only: use Precision.float(e, m, finite=True)")

    def _check_float(self) -> None:
        e, m = self.exp_bits, self.man_bits
        if not _is_int(e) or e not in VALID_EXP_BITS:
            raise PlanError(f"Precision.exp_bits={e!r}: a float format needs an exponent width from "
                            f"{VALID_EXP_BITS[0]} to {VALID_EXP_BITS[-1]}")
        if not _is_int(m) or m not in VALID_MAN_BITS:
            raise PlanError(f"Precision.man_bits={m!r}: a float format needs a mantissa width from "
                            f"{VALID_MAN_BITS[0]} to {VALID_MAN_BITS[-1]} (products of two values stay exact in "
                            f"float32)")
        if self.finite and (e > 7 or m < 1):
            raise PlanError(f"a finite ('fn') float format needs exp_bits <= 7 and man_bits >= 1, got e{e}m{m}: "
                            f"use finite=False")
        if self.clusters is not None:
            raise PlanError("Precision.clusters belongs to kind 'clustered', not 'float'")
        total = 1 + e + m
        if self.w_bits != total or self.a_bits != total:
            raise PlanError(f"a float format's w_bits and a_bits are its total bits 1 + {e} + {m} = {total}, got "
                            f"w_bits={self.w_bits!r}, a_bits={self.a_bits!r}: use Precision.float({e}, {m})")

    def _check_clustered(self) -> None:
        k = self.clusters
        if not _is_int(k) or k not in VALID_CLUSTERS:
            raise PlanError(f"Precision.clusters={k!r}: use an integer number of shared weight values from "
                            f"{VALID_CLUSTERS[0]} to {VALID_CLUSTERS[-1]}")
        if not _is_int(self.a_bits) or self.a_bits not in VALID_BITS:
            raise PlanError(f"Precision.a_bits={self.a_bits!r} is out of range: use an integer from "
                            f"{VALID_BITS[0]} to {VALID_BITS[-1]}")
        if self.exp_bits is not None or self.man_bits is not None or self.finite:
            raise PlanError("exp_bits, man_bits and finite belong to kind 'float', not 'clustered'")
        if self.w_bits != index_bits(k):
            raise PlanError(f"a clustered layer's w_bits is its index width ceil(log2({k})) = {index_bits(k)}, got "
                            f"{self.w_bits!r}: use Precision.clustered({k}, a_bits={self.a_bits})")

    # -- presets ---------------------------------------------------------------------------------------------------

    @classmethod
    def float(cls, exp_bits: int, man_bits: int, finite: bool = False) -> "Precision":
        """An IEEE-style float format with ``exp_bits`` exponent and ``man_bits`` mantissa bits (eXmY)."""
        total = 1 + exp_bits + man_bits if _is_int(exp_bits) and _is_int(man_bits) else 0
        return cls(total, total, "float", exp_bits, man_bits, finite)

    @classmethod
    def fp16(cls) -> "Precision":
        """IEEE half precision (e5m10)."""
        return cls.float(*FLOAT_PRESETS["fp16"])

    @classmethod
    def bf16(cls) -> "Precision":
        """bfloat16 (e8m7)."""
        return cls.float(*FLOAT_PRESETS["bf16"])

    @classmethod
    def fp8_e4m3(cls) -> "Precision":
        """OCP FP8 E4M3 (e4m3fn: no infinities, largest value 448)."""
        return cls.float(*FLOAT_PRESETS["fp8_e4m3"])

    @classmethod
    def fp8_e5m2(cls) -> "Precision":
        """OCP FP8 E5M2 (IEEE-style, largest value 57344)."""
        return cls.float(*FLOAT_PRESETS["fp8_e5m2"])

    @classmethod
    def clustered(cls, clusters: int, a_bits: int = 8) -> "Precision":
        """Weights shared among ``clusters`` values, ``a_bits`` activation codes, products by table look-up."""
        return cls(index_bits(clusters) if _is_int(clusters) and clusters > 0 else 0, a_bits, "clustered",
                   clusters=clusters)

    # -- views -----------------------------------------------------------------------------------------------------

    @property
    def is_integer(self) -> bool:
        """True for the integer kinds (bit-serial / packed kernels on integer codes)."""
        return self.kind in INTEGER_KINDS

    @property
    def format_name(self) -> str:
        """``e5m10`` / ``e4m3fn`` for a float format, ``K16`` for a clustered one, ``w4a8`` for an integer one."""
        if self.kind == "float":
            return f"e{self.exp_bits}m{self.man_bits}" + ("fn" if self.finite else "")
        if self.kind == "clustered":
            return f"K{self.clusters}"
        return f"w{self.w_bits}a{self.a_bits}"

    @property
    def resolved_kind(self) -> str:
        """The kernel kind: the forced one, or the automatic choice for these bit-widths."""
        if self.kind != "auto":
            return self.kind
        return "bitserial" if self.w_bits * self.a_bits <= BITSERIAL_MAX_PRODUCT else "packed"

    @property
    def kernel_name(self) -> str:
        """The report's kernel column: ``bitserial``, ``packed``, ``float:e5m10`` or ``clustered:K16``."""
        if self.kind in ("float", "clustered"):
            return f"{self.kind}:{self.format_name}"
        return self.resolved_kind

    def __str__(self) -> str:
        if self.kind == "float":
            return self.format_name
        if self.kind == "clustered":
            return f"c{self.clusters}a{self.a_bits}"
        return f"w{self.w_bits}a{self.a_bits}" + ("" if self.kind == "auto" else f"/{self.kind}")

    def to_dict(self) -> dict:
        out = {"w_bits": self.w_bits, "a_bits": self.a_bits, "kind": self.kind}
        if self.kind == "float":
            out.update(exp_bits=self.exp_bits, man_bits=self.man_bits, finite=self.finite)
        elif self.kind == "clustered":
            out["clusters"] = self.clusters
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "Precision":
        if not isinstance(data, Mapping):
            raise PlanError(f"a precision must be an object like {{'w_bits': 4, 'a_bits': 4}}, got {data!r}")
        known = {"w_bits", "a_bits", "kind", "exp_bits", "man_bits", "finite", "clusters"}
        unknown = set(data) - known
        if unknown:
            raise PlanError(f"unknown precision field(s) {sorted(unknown)}: use {', '.join(sorted(known))}")
        kind = str(data.get("kind", "auto"))
        try:
            if kind == "float":
                e, m = int(data["exp_bits"]), int(data["man_bits"])
                finite = data.get("finite", False)
                if not isinstance(finite, bool):
                    raise PlanError(f"precision field finite={finite!r} must be true or false")
                total = 1 + e + m
                return cls(int(data.get("w_bits", total)), int(data.get("a_bits", total)), kind, e, m, finite)
            if kind == "clustered":
                k = int(data["clusters"])
                return cls(int(data.get("w_bits", index_bits(k))), int(data["a_bits"]), kind, clusters=k)
            return cls(int(data["w_bits"]), int(data["a_bits"]), kind,
                       *(None if data.get(f) is None else int(data[f]) for f in ("exp_bits", "man_bits")),
                       bool(data.get("finite", False)),
                       None if data.get("clusters") is None else int(data["clusters"]))
        except KeyError as err:
            needs = {"float": "exp_bits and man_bits", "clustered": "clusters and a_bits"}.get(kind,
                                                                                               "both w_bits and a_bits")
            raise PlanError(f"a precision of kind {kind!r} needs {needs}; {err.args[0]} is missing") from None
        except (TypeError, ValueError):
            raise PlanError(f"precision fields must be integers, got {dict(data)!r}") from None

    @classmethod
    def parse(cls, text: str) -> "Precision":
        """Parse a short form: ``w4a8`` (optionally ``w4a8/packed``), ``fp16``, ``bf16``, ``fp8_e4m3``,
        ``fp8_e5m2``, ``e3m4`` / ``e4m3fn`` (any eXmY), ``c16a8`` (clustered)."""
        body, _, kind = text.strip().lower().partition("/")
        if not kind:
            if body in FLOAT_PRESETS:
                return cls.float(*FLOAT_PRESETS[body])
            found = re.fullmatch(r"e(\d+)m(\d+)(fn)?", body)
            if found:
                return cls.float(int(found.group(1)), int(found.group(2)), bool(found.group(3)))
            found = re.fullmatch(r"c(\d+)a(\d+)", body)
            if found:
                return cls.clustered(int(found.group(1)), int(found.group(2)))
        if kind not in ("", *INTEGER_KINDS) or not (body.startswith("w") and "a" in body):
            raise PlanError(f"cannot read precision {text!r}: {_PARSE_HINT}")
        w, _, a = body[1:].partition("a")
        try:
            return cls(int(w), int(a), kind or "auto")
        except ValueError:
            raise PlanError(f"cannot read precision {text!r}: {_PARSE_HINT}") from None


@dataclass(frozen=True)
class PrecisionPlan:
    """Layer name -> :class:`Precision`. Layers absent from the plan stay in fp32.

    ``layers`` optionally records every layer name of the model the plan was made for; when given, the plan
    refuses names that are not among them. :meth:`validate_for` checks a plan against a module's layers.
    """

    precisions: Mapping[str, Precision]
    layers: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.precisions, Mapping):
            raise PlanError("PrecisionPlan takes a mapping of layer name -> Precision")
        clean = {}
        for name, prec in self.precisions.items():
            if not isinstance(name, str) or not name:
                raise PlanError(f"layer names in a plan are non-empty strings, got {name!r}")
            if isinstance(prec, Mapping):
                prec = Precision.from_dict(prec)
            elif isinstance(prec, str):
                prec = Precision.parse(prec)
            if not isinstance(prec, Precision):
                raise PlanError(f"plan entry {name!r} must be a Precision, got {type(prec).__name__}")
            clean[name] = prec
        object.__setattr__(self, "precisions", MappingProxyType(dict(sorted(clean.items()))))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
            self._check_names(self.layers)

    def _check_names(self, valid: Iterable[str]) -> None:
        valid = list(valid)
        unknown = [n for n in self.precisions if n not in set(valid)]
        if unknown:
            shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
            raise PlanError(f"unknown layer {unknown[0]!r} in plan; the model's layers are: {shown or '(none)'}")

    def validate_for(self, layer_names: Iterable[str]) -> "PrecisionPlan":
        """Raise :class:`PlanError` naming the valid layers if the plan names a layer the model does not have."""
        self._check_names(layer_names)
        return self

    @classmethod
    def uniform(cls, mod_or_layers, precision: Precision) -> "PrecisionPlan":
        """The same precision for every layer of a module (or of a list of layer names / LayerInfo)."""
        if not isinstance(precision, Precision):
            raise PlanError("PrecisionPlan.uniform needs a Precision, e.g. Precision(w_bits=4, a_bits=4)")
        names = _layer_names(mod_or_layers)
        return cls({n: precision for n in names}, layers=names)

    def get(self, name: str) -> Precision | None:
        return self.precisions.get(name)

    def __getitem__(self, name: str) -> Precision:
        try:
            return self.precisions[name]
        except KeyError:
            raise PlanError(f"layer {name!r} is not in the plan; it has: {', '.join(self.precisions)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.precisions

    def __iter__(self):
        return iter(self.precisions)

    def __len__(self) -> int:
        return len(self.precisions)

    def items(self):
        return self.precisions.items()

    def to_json(self) -> str:
        return json.dumps({"layers": {n: p.to_dict() for n, p in self.precisions.items()}}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PrecisionPlan":
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise PlanError(f"plan is not valid JSON ({err}); "
                            f"write it as {{\"layers\": {{name: {{w_bits, a_bits}}}}}}") from None
        if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
            raise PlanError('plan JSON must be an object with a "layers" object: '
                            '{"layers": {"conv2d_0": {"w_bits": 4, "a_bits": 4}}}')
        return cls({n: Precision.from_dict(p) for n, p in data["layers"].items()})


def _layer_names(mod_or_layers) -> tuple[str, ...]:
    if isinstance(mod_or_layers, (list, tuple)):
        return tuple(getattr(x, "name", x) for x in mod_or_layers)
    from .layers import list_layers  # a module: discover its layers (lazy import keeps this file at the bottom)

    return tuple(layer.name for layer in list_layers(mod_or_layers))
