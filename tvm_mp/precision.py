"""Per-layer precision and precision plans: frozen, self-validating value types.

This module is at the bottom of the package: it imports nothing else of tvm-mp except the errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from .errors import PlanError

#: Bit-widths a layer may use for weights and activations.
VALID_BITS = tuple(range(1, 9))
#: Kernel kinds. ``auto`` picks ``bitserial`` when ``w_bits * a_bits <= BITSERIAL_MAX_PRODUCT`` else ``packed``.
KINDS = ("auto", "bitserial", "packed")
#: Bit-serial work grows with w_bits * a_bits (one AND+popcount per pair of bit-planes), packed-integer work does
#: not; at or below this product the bit-serial kernel needs fewer word operations than an 8-bit MAC per element.
BITSERIAL_MAX_PRODUCT = 4


@dataclass(frozen=True)
class Precision:
    """Bit-widths of one layer.

    w_bits: weight bits, 1..8. One bit means binary weights {-1, +1} times a per-channel scale; b >= 2 bits means
        symmetric integers in [-(2**(b-1) - 1), 2**(b-1) - 1] times a per-channel scale.
    a_bits: activation bits, 1..8; activations are unsigned codes in [0, 2**a_bits - 1] with a zero point.
    kind: "auto" (default), "bitserial" or "packed". ``resolved_kind`` gives the kernel actually used.
    """

    w_bits: int
    a_bits: int
    kind: str = "auto"

    def __post_init__(self) -> None:
        for name in ("w_bits", "a_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value not in VALID_BITS:
                raise PlanError(
                    f"Precision.{name}={value!r} is out of range: use an integer from {VALID_BITS[0]} to {VALID_BITS[-1]}"
                )
        if self.kind not in KINDS:
            raise PlanError(f"Precision.kind={self.kind!r} is unknown: use one of {', '.join(KINDS)}")

    @property
    def resolved_kind(self) -> str:
        """The kernel kind: the forced one, or the automatic choice for these bit-widths."""
        if self.kind != "auto":
            return self.kind
        return "bitserial" if self.w_bits * self.a_bits <= BITSERIAL_MAX_PRODUCT else "packed"

    def __str__(self) -> str:
        return f"w{self.w_bits}a{self.a_bits}" + ("" if self.kind == "auto" else f"/{self.kind}")

    def to_dict(self) -> dict:
        return {"w_bits": self.w_bits, "a_bits": self.a_bits, "kind": self.kind}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Precision":
        if not isinstance(data, Mapping):
            raise PlanError(f"a precision must be an object like {{'w_bits': 4, 'a_bits': 4}}, got {data!r}")
        unknown = set(data) - {"w_bits", "a_bits", "kind"}
        if unknown:
            raise PlanError(f"unknown precision field(s) {sorted(unknown)}: use w_bits, a_bits and kind")
        try:
            return cls(int(data["w_bits"]), int(data["a_bits"]), str(data.get("kind", "auto")))
        except KeyError as err:
            raise PlanError(f"a precision needs both w_bits and a_bits; {err.args[0]} is missing") from None

    @classmethod
    def parse(cls, text: str) -> "Precision":
        """Parse the short form ``w4a8`` (optionally ``w4a8/packed``)."""
        body, _, kind = text.strip().lower().partition("/")
        if not (body.startswith("w") and "a" in body):
            raise PlanError(f"cannot read precision {text!r}: write it like 'w4a8' or 'w2a2/bitserial'")
        w, _, a = body[1:].partition("a")
        try:
            return cls(int(w), int(a), kind or "auto")
        except ValueError:
            raise PlanError(f"cannot read precision {text!r}: write it like 'w4a8' or 'w2a2/bitserial'") from None


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
            raise PlanError(f"plan is not valid JSON ({err}); write it as {{\"layers\": {{name: {{w_bits, a_bits}}}}}}") from None
        if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
            raise PlanError('plan JSON must be an object with a "layers" object: {"layers": {"conv2d_0": {"w_bits": 4, "a_bits": 4}}}')
        return cls({n: Precision.from_dict(p) for n, p in data["layers"].items()})


def _layer_names(mod_or_layers) -> tuple[str, ...]:
    if isinstance(mod_or_layers, (list, tuple)):
        return tuple(getattr(x, "name", x) for x in mod_or_layers)
    from .layers import list_layers  # a module: discover its layers (lazy import keeps this file at the bottom)

    return tuple(layer.name for layer in list_layers(mod_or_layers))
