"""Canonical form of a Relax module for tvm-mp (placeholder until the canonicalize phase lands)."""

from __future__ import annotations

import tvm


def canonicalize(mod: tvm.IRModule) -> tvm.IRModule:
    return mod
