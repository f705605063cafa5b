"""Per-layer precision and precision plans: frozen, self-validating value types.

This module is at the bottom of the package: it imports nothing else of tvm-mp except the errors and the kinds.
"""

from __future__ import annotations

import json
import math
import numbers
import os
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
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _show(value) -> str:
    """A value as its JSON text when it has one (``true``, ``"4"``, ``4.7``, ``Infinity``), else its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _not_integer(value) -> str:
    """Why ``value`` is not a usable integer bit-width ("" when it is an integer)."""
    if value is None:
        return "null, not a number"
    if isinstance(value, bool):
        return "a boolean, not a number"
    if isinstance(value, str):
        return "text, not a number"
    if isinstance(value, numbers.Real) and not _is_int(value):
        if not math.isfinite(value):
            return "not a finite number"
        return "not a whole number" if value != int(value) else "a float, not an integer"
    if not _is_int(value):
        return f"a {type(value).__name__}, not an integer"
    return ""


def _range_error(name: str, value, valid: tuple[int, ...], owner: str = "Precision.") -> str | None:
    """The message for a bit-width field outside ``valid`` or not an integer (None when it is fine)."""
    why = _not_integer(value)
    if why:
        return f"{owner}{name}={value!r} is {why}: use an integer from {valid[0]} to {valid[-1]}"
    if value not in valid:
        return f"{owner}{name}={value!r} is out of range: use an integer from {valid[0]} to {valid[-1]}"
    return None


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
        for name in ("w_bits", "a_bits", "exp_bits", "man_bits", "clusters"):
            value = getattr(self, name)
            if _is_int(value) and type(value) is not int:  # NumPy integers: kept as plain ints (JSON, hashing)
                object.__setattr__(self, name, int(value))
        if not isinstance(self.kind, str) or self.kind not in KINDS:
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
            problem = _range_error(name, value, VALID_BITS)
            if problem:
                raise PlanError(problem + (" (16-bit and 8-bit floats: Precision.fp16(), .bf16(), .fp8_e4m3(), "
                                           ".fp8_e5m2())" if _is_int(value) and value > VALID_BITS[-1] else ""))
        for name in ("exp_bits", "man_bits", "clusters"):
            if getattr(self, name) is not None:
                raise PlanError(f"Precision.{name} belongs to kind 'float' or 'clustered', not {self.kind!r}: "
                                f"use Precision.float(e, m) or Precision.clustered(k, a_bits)")
        if self.finite:
            raise PlanError("Precision.finite applies to float formats only: use Precision.float(e, m, finite=True)")

    def _check_float(self) -> None:
        e, m = self.exp_bits, self.man_bits
        if not _is_int(e) or e not in VALID_EXP_BITS:
            raise PlanError(f"Precision.exp_bits={e!r}: a float format needs an integer exponent width from "
                            f"{VALID_EXP_BITS[0]} to {VALID_EXP_BITS[-1]}")
        if not _is_int(m) or m not in VALID_MAN_BITS:
            raise PlanError(f"Precision.man_bits={m!r}: a float format needs an integer mantissa width from "
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
        problem = _range_error("a_bits", self.a_bits, VALID_BITS)
        if problem:
            raise PlanError(problem)
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

    #: The fields of a precision object in a plan file.
    FIELDS = ("w_bits", "a_bits", "kind", "exp_bits", "man_bits", "finite", "clusters")

    @classmethod
    def from_dict(cls, data: Mapping) -> "Precision":
        """The precision ``to_dict`` wrote. Strict: every bit-width is a JSON integer (``true``, ``4.7``, ``"4"``
        and ``1e400`` are refused, not converted), ``finite`` a boolean, ``kind`` a string; unknown fields are
        refused by name."""
        if not isinstance(data, Mapping):
            raise PlanError(f"a precision must be an object like {{\"w_bits\": 4, \"a_bits\": 4}}, got {_show(data)}")
        unknown = sorted(str(k) for k in data if k not in cls.FIELDS)
        if unknown:
            raise PlanError(f"unknown precision field(s) {', '.join(map(repr, unknown))}: the fields are "
                            f"{', '.join(cls.FIELDS)}")
        kind = data.get("kind", "auto")
        if not isinstance(kind, str) or kind not in KINDS:
            raise PlanError(f"precision field kind={_show(kind)} is unknown: use one of {', '.join(KINDS)}")
        finite = data.get("finite", False)
        if not isinstance(finite, bool):
            raise PlanError(f"precision field finite={_show(finite)} must be true or false")
        ints = {}
        for name in ("w_bits", "a_bits", "exp_bits", "man_bits", "clusters"):
            if name in data:
                why = _not_integer(data[name])
                if why:
                    raise PlanError(f"precision field {name}={_show(data[name])} is {why}: write a JSON integer, "
                                    f"e.g. \"{name}\": 4")
                ints[name] = int(data[name])
        needs = {"float": ("exp_bits", "man_bits"), "clustered": ("clusters", "a_bits")}.get(kind, ("w_bits", "a_bits"))
        missing = [name for name in needs if name not in ints]
        if missing:
            raise PlanError(f"a precision of kind {kind!r} needs {' and '.join(needs)}; {' and '.join(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} missing")
        if kind == "float":
            total = 1 + ints["exp_bits"] + ints["man_bits"]
            return cls(ints.get("w_bits", total), ints.get("a_bits", total), kind, ints["exp_bits"], ints["man_bits"],
                       finite)
        if kind == "clustered":
            k = ints["clusters"]
            return cls(ints.get("w_bits", index_bits(k) if k > 0 else 0), ints["a_bits"], kind, clusters=k)
        return cls(ints["w_bits"], ints["a_bits"], kind, ints.get("exp_bits"), ints.get("man_bits"), finite,
                   ints.get("clusters"))

    @classmethod
    def parse(cls, text: str) -> "Precision":
        """Parse a short form: ``w4a8`` (optionally ``w4a8/packed``), ``fp16``, ``bf16``, ``fp8_e4m3``,
        ``fp8_e5m2``, ``e3m4`` / ``e4m3fn`` (any eXmY), ``c16a8`` (clustered)."""
        if not isinstance(text, str):
            raise PlanError(f"Precision.parse needs text such as 'w4a8', got {type(text).__name__} {text!r}: "
                            "for numbers use Precision(w_bits, a_bits)")
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
            if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, Iterable):
                raise PlanError(f"PrecisionPlan(layers=...) takes the model's layer names as a list, got "
                                f"{type(self.layers).__name__}")
            object.__setattr__(self, "layers", tuple(self.layers))
            self._check_names(self.layers)

    def _check_names(self, valid: Iterable[str]) -> None:
        valid = list(valid)
        unknown = [n for n in self.precisions if n not in set(valid)]
        if unknown:
            shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
            names = ", ".join(map(repr, unknown[:3])) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
            other = " (a plan made for another model?)" if len(unknown) == len(self.precisions) else ""
            raise PlanError(f"unknown layer{'s' if len(unknown) > 1 else ''} {names} in plan{other}; the model's "
                            f"layers are: {shown or '(none)'}")

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
    def from_json(cls, text: str | bytes) -> "PrecisionPlan":
        """The plan :meth:`to_json` wrote: ``{"layers": {name: {"w_bits": 4, "a_bits": 4, ...}}}``. Strict (see
        :meth:`Precision.from_dict`); keys other than ``layers`` are refused by name; an error names the layer."""
        example = '{"layers": {"conv2d_0": {"w_bits": 4, "a_bits": 4}}}'
        if not isinstance(text, (str, bytes, bytearray)):
            raise PlanError(f"PrecisionPlan.from_json needs the JSON text, got {type(text).__name__}: for a file "
                            "use PrecisionPlan.load(path)")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PlanError(f"plan is not valid JSON ({err}): write it as {example}") from None
        except RecursionError:
            raise PlanError(f"plan JSON is nested too deeply: write it as {example}") from None
        if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
            raise PlanError(f'plan JSON must be an object with a "layers" object, got {type(data).__name__}'
                            f"{'' if not isinstance(data, dict) else ' with layers ' + _show_type(data.get('layers'))}"
                            f": write it as {example}")
        extra = sorted(str(k) for k in data if k != "layers")
        if extra:
            raise PlanError(f"unknown key(s) {', '.join(map(repr, extra))} in plan JSON: it holds only \"layers\", "
                            f"e.g. {example}")
        precisions = {}
        for name, prec in data["layers"].items():
            try:
                precisions[name] = Precision.from_dict(prec)
            except PlanError as err:
                raise PlanError(f"plan layer {name!r}: {err}") from None
        return cls(precisions)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PrecisionPlan":
        """The plan in a JSON file (:meth:`to_json`'s form); one-line :class:`PlanError` for a missing, unreadable
        or malformed file."""
        if not isinstance(path, (str, os.PathLike)):
            raise PlanError(f"PrecisionPlan.load needs a file path, got {type(path).__name__}")
        name = os.fspath(path)
        try:
            with open(name, "rb") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise PlanError(f"plan file {name!r} not found: give a plan .json file (PrecisionPlan.to_json)") from None
        except IsADirectoryError:
            raise PlanError(f"plan file {name!r} is a directory: give a plan .json file") from None
        except OSError as err:
            raise PlanError(f"cannot read plan file {name!r}: {err.strerror or err}") from None
        if not text.strip():
            raise PlanError(f"plan file {name!r} is empty: write it as "
                            '{"layers": {"conv2d_0": {"w_bits": 4, "a_bits": 4}}}')
        try:
            return cls.from_json(text)
        except PlanError as err:
            raise PlanError(f"plan file {name!r}: {err}") from None


def _show_type(value) -> str:
    return "null" if value is None else type(value).__name__


def _layer_names(mod_or_layers) -> tuple[str, ...]:
    if isinstance(mod_or_layers, (list, tuple)):
        return tuple(getattr(x, "name", x) for x in mod_or_layers)
    from .layers import list_layers  # a module: discover its layers (lazy import keeps this file at the bottom)

    return tuple(layer.name for layer in list_layers(mod_or_layers))
