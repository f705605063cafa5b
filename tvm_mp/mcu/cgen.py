"""Small helpers to write C source text: exact literals and constant arrays."""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import PlanError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def c_ident(text: str) -> str:
    """A C identifier made from ``text`` (other characters become ``_``)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", str(text))
    return out if out and not out[0].isdigit() else "_" + out


def check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise PlanError(f"{name!r} is not a C identifier: use letters, digits and '_' (see tvm_mp.mcu.cgen.c_ident)")
    return name


def c_float(value: float) -> str:
    """Exact C literal of a float32 value (hexadecimal float, so no decimal rounding happens)."""
    v = float(np.float32(value))
    if math.isnan(v):
        return "__builtin_nanf(\"\")"
    if math.isinf(v):
        return "__builtin_inff()" if v > 0 else "(-__builtin_inff())"
    return f"{v.hex()}f"


def c_int(value: int) -> str:
    v = int(value)
    if v == -(2**31):
        return "(-2147483647 - 1)"
    return str(v)


def c_array(name: str, ctype: str, values, per_line: int = 16, qualifier: str = "static const",
            align: int = 4) -> str:
    """``qualifier ctype name[n] = {...};`` with exact literals (floats in hex, unsigned words in hex)."""
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind == "f":
        items = [c_float(v) for v in flat]
    elif flat.dtype.kind == "u" and flat.dtype.itemsize >= 2:
        width = flat.dtype.itemsize * 2
        items = [f"0x{int(v):0{width}x}u" for v in flat]
    else:
        items = [c_int(v) for v in flat]
    if not items:
        items = ["0"]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return (f"{qualifier} {ctype} {check_ident(name)}[{max(len(flat), 1)}] __attribute__((aligned({align}))) = {{\n"
            f"    {body}\n}};\n")
