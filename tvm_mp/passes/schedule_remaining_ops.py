"""ScheduleRemainingOps: give the operators tvm-mp leaves in fp32 a CPU schedule. The last tvm-mp pass.

Rewrites: every Relax op still in the module (``add``, ``relu``, pooling, ``mean``, resize, softmax ... -- the
fp32 parts around the integer kernels) is legalized as ``tvm.compile`` legalizes it for a CPU
(:func:`tvm_mp._tvm.legalize_like_compile`), and each PrimFunc that legalization creates gets tvm-mp's default
CPU schedule (:func:`tvm_mp.schedules.cpu.schedule_default`: the innermost loop of elementwise blocks
vectorized by TVM, large blocks parallel). Without it ``tvm.compile`` hands LLVM the plain loops, and LLVM
fully unrolls an innermost loop of 16 and vectorizes across the loop outside it with gathers and scattered
stores: on the host an fp32 ``add`` over (1, 24, 16, 16) took 7.5 us instead of 1.2, a ``relu`` 5.4 instead of
0.9.

Leaves alone: tvm-mp's own kernels and every PrimFunc already in the module; modules for targets that are not
LLVM CPUs (the C code generator of the micro-controllers) or without a target (no target given and no
``tvm.target.Target`` context); a PrimFunc the default schedule cannot transform stays as legalization made it.
Numerics are unchanged (the schedule reorders loops only).

Needs before it: :class:`~tvm_mp.passes.RewriteMixedPrecision` (what is still a Relax op then is exactly what
runs in fp32). Idempotent: a second run finds nothing left to legalize.
"""

from __future__ import annotations

import tvm

from .. import _tvm
from ..schedules.cpu import schedule_default
from ..targets import parse


@tvm.transform.module_pass(opt_level=0, name="tvm_mp.ScheduleRemainingOps")
class ScheduleRemainingOps:
    """Module pass (see module docstring). ``target``: the build's target (anything
    :func:`tvm_mp.targets.parse` takes); None: the current ``tvm.target.Target`` context, if any."""

    def __init__(self, target=None):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = self.target if self.target is not None else tvm.target.Target.current(allow_none=True)
        if target is None:
            return mod
        target = parse(target)
        if target.arch == "generic":  # not an LLVM CPU: TVM's own lowering for that code generator
            return mod
        before = {gv.name_hint for gv in mod.functions}
        legalized = _tvm.legalize_like_compile(mod, target.tvm_target)
        called = _tvm.called_prim_funcs(legalized)
        for gv, func in list(legalized.functions.items()):
            if gv.name_hint in before or not isinstance(func, tvm.tirx.PrimFunc):
                continue
            if gv.name_hint not in called:  # a reshape legalized and then turned back into a view: not kept
                del legalized[gv]
                continue
            try:
                legalized[gv] = schedule_default(func)
            except _tvm.ScheduleError:
                pass  # kept as legalization made it: TVM builds it unscheduled, as it would without this pass
        return legalized
