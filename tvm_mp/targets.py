"""Compile targets as objects: every way a user names a target, parsed once into one :class:`CompileTarget`.

Accepted forms (:func:`parse`):

- ``None`` or ``"host"``: this machine, with its CPU named (``mcpu``) so LLVM may use every vector feature it has
  (AVX-512, VNNI, VPOPCNTDQ, ...). **The default everywhere.**
- ``"llvm"``: what TVM means by it, a generic CPU of this machine's architecture (no CPU features beyond the
  baseline; much slower kernels).
- ``"aarch64"``: 64-bit ARM Linux with NEON (``{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}``).
  Its export also writes the standalone bundle (:mod:`tvm_mp.deploy.aarch64`: C, no TVM runtime).
- ``"cortex-m4"``, ``"cortex-m7"`` (and ``"cortex-m3"``): a Cortex-M micro-controller, kind ``"cortex-m"``. Not a
  TVM build: the quantized module becomes C (:mod:`tvm_mp.mcu`, :mod:`tvm_mp.deploy.cortexm`).
- a JSON dict (or its text), e.g. ``{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}``.
- ``"accel"``: the VTA-like accelerator (:mod:`tvm_mp.accel`, its default description ``default.json``), or
  ``{"kind": "accel", "config": "my_accel.json"}`` with your description (a file path, JSON text or a dict, checked by
  :meth:`~tvm_mp.accel.hardware.HardwareConfig.from_json`). The integer layers whose precision the datapath runs
  execute on the accelerator's bit-exact simulator (:mod:`tvm_mp.accel.target`); the rest of the model runs on
  this host's CPU. Its cost model is :class:`~tvm_mp.cost_models.accel.AccelCostModel`.
- a ``tvm.target.Target``.
- a :class:`CompileTarget` (returned as it is).

A target knows its TVM target, its architecture (``"x86_64"``, ``"aarch64"`` or ``"generic"``: the one word the
schedule registry, the cost models and the measurement records use), whether it is this machine, its key in a
tuning database (:attr:`CompileTarget.key`, the one key scheme of every tuning database: ``tune`` writes it, builds
read it), the tuning databases it reads (the per-user one ``tune`` writes, then the one shipped with tvm-mp), its
default cost model, and how its artifacts are exported (the C compiler that links them). No other module turns a
target into a string.

The per-user directory (:func:`user_home`) is ``$TVM_MP_HOME``, else ``$XDG_CACHE_HOME/tvm-mp``, else
``~/.cache/tvm-mp``; it holds the user tuning database ``tuning.json`` (:func:`user_database_path`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import tvm

from . import _tvm
from ._files import atomic_path
from .errors import CompileError, Error, ToolchainError

#: The tuning database shipped with tvm-mp (written by ``python bench/kernels.py --tune``).
SHIPPED_DATABASE = Path(__file__).parent / "schedules" / "tuning_db.json"

#: Environment variable naming tvm-mp's per-user directory (default ``$XDG_CACHE_HOME/tvm-mp``, else
#: ``~/.cache/tvm-mp``).
HOME_ENV = "TVM_MP_HOME"

#: File name of the user tuning database in :func:`user_home`.
USER_DATABASE = "tuning.json"

#: The default target of every entry point.
DEFAULT = "host"

#: Short names tvm-mp defines, as TVM target JSON (``"host"`` is resolved to this machine's CPU at parse time).
ALIASES: dict[str, dict] = {
    "host": {"kind": "llvm"},
    "llvm": {"kind": "llvm"},
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
    "cortex-m4": {"kind": "c", "mcpu": "cortex-m4"},
    "cortex-m7": {"kind": "c", "mcpu": "cortex-m7"},
    "cortex-m3": {"kind": "c", "mcpu": "cortex-m3"},
}

#: TVM target kinds tvm-mp builds for: CPUs through LLVM, and C (the Cortex-M targets). GPUs and other devices
#: (cuda, opencl, vulkan, rocm, metal, ...) are refused: the integer kernels are CPU schedules.
KINDS = ("llvm", "c")

#: x86 triples LLVM knows under another name than its target's (``i686-...`` is the ``x86`` target).
_X86_ARCHES = ("i386", "i486", "i586", "i686")

#: Names of the Cortex-M targets (kind "cortex-m": C from the quantized module, no TVM build).
CORTEX_M = ("cortex-m3", "cortex-m4", "cortex-m7")

#: Architectures by LLVM triple prefix.
_ARCHES = (("x86_64", ("x86_64", "i686", "i386")), ("aarch64", ("aarch64", "arm64")))

#: Cross C compilers (Debian package in brackets) that link an architecture's shared libraries.
CROSS_COMPILERS = {"aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")}


#: LLVM feature names (prefixes) that are instructions, per architecture: code using one faults (SIGILL) on a CPU
#: without it. LLVM's other "features" are tuning hints (``macrofusion``, ``slow-3ops-lea``) that any CPU runs.
_ISA_FEATURES = {
    "x86_64": ("avx", "amx", "sse", "ssse3", "fma", "f16c", "bmi", "popcnt", "lzcnt", "xop", "aes", "vaes", "pclmul",
               "vpclmulqdq", "gfni", "sha", "adx", "movbe", "evex512", "cx16", "rdrnd", "rdseed", "xsave"),
    "aarch64": ("neon", "dotprod", "i8mm", "sve", "sme", "fullfp16", "fp16", "bf16", "crc", "crypto", "aes", "sha",
                "lse", "rcpc"),
}


class TargetError(Error):
    """A target that cannot be parsed or used (unknown name, malformed JSON, missing cross compiler)."""


class CrossCompilerMissing(TargetError, ToolchainError):
    """The cross compiler that links for the target's architecture is not installed."""


@functools.lru_cache(maxsize=1)
def host_cpu() -> str:
    """LLVM's name of this machine's CPU (e.g. ``znver4``)."""
    from tvm.target import codegen

    return str(codegen.llvm_get_system_cpu())


@functools.lru_cache(maxsize=1)
def host_triple() -> str:
    from tvm.target import codegen

    return str(codegen.llvm_get_system_triple())


def user_home() -> Path:
    """tvm-mp's per-user directory: ``$TVM_MP_HOME``, else ``$XDG_CACHE_HOME/tvm-mp``, else ``~/.cache/tvm-mp``
    (read at each call; not created here)."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "tvm-mp"


def user_database_path() -> Path:
    """The user tuning database: what ``tvm-mp tune`` writes and every build reads first."""
    return user_home() / USER_DATABASE


def tuning_key(kind: str, triple: str, mcpu: str, mattr) -> str:
    """A target's key in a tuning database: ``kind|machine|cpu|attributes``. The triple is reduced to its machine
    (``x86_64``, ``aarch64``; this machine's when empty), so ``host``, the same CPU named with any vendor or OS in
    its triple, and keys written by older tvm-mp versions (full triple, or none) all meet."""
    machine = (triple or (host_triple() if kind == "llvm" else "")).split("-")[0]
    attrs = mattr.split(",") if isinstance(mattr, str) else [str(a) for a in mattr]
    return "|".join([kind, machine, mcpu, ",".join(sorted(a for a in attrs if a))])


def normalize_key(key: str) -> str:
    """A tuning-database key as :func:`tuning_key` writes it (keys of older versions are rewritten; other strings
    are returned as they are)."""
    parts = str(key).split("|")
    if len(parts) != 4:
        return str(key)
    return tuning_key(*parts)


def arch_of_triple(triple: str) -> str:
    """``"x86_64"``, ``"aarch64"`` or ``"generic"`` for an LLVM triple (``""``: this machine)."""
    triple = triple or host_triple()
    for arch, prefixes in _ARCHES:
        if triple.startswith(prefixes):
            return arch
    return "generic"


@dataclass(frozen=True, eq=False)
class CompileTarget:
    """One compile target (see module docstring). Build it with :func:`parse`."""

    name: str  # how the user named it: "host", "llvm", "aarch64", "accel", or "custom" for JSON / tvm Targets
    tvm_target: tvm.target.Target  # the accelerator's: the host CPU that runs the rest of the model
    hardware: Any = None  # the accelerator's HardwareConfig (None for every other target)

    @property
    def kind(self) -> str:
        """TVM's target kind (``"llvm"``, ...), or ``"cortex-m"`` for the Cortex-M targets (not TVM builds)."""
        if self.name in CORTEX_M:
            return "cortex-m"
        if self.hardware is not None:
            return "accel"
        return str(self.tvm_target.kind.name)

    @property
    def _tvm_kind(self) -> str:
        return str(self.tvm_target.kind.name)

    @property
    def builds_with_tvm(self) -> bool:
        """True when the driver lowers and builds with TVM; False for Cortex-M (C from the quantized module)."""
        return self.kind != "cortex-m"

    @property
    def triple(self) -> str:
        return str(self.tvm_target.attrs.get("mtriple", "") or "")

    @property
    def mcpu(self) -> str:
        return str(self.tvm_target.attrs.get("mcpu", "") or "")

    @property
    def arch(self) -> str:
        """``"x86_64"``, ``"aarch64"`` or ``"generic"`` (not an LLVM CPU target)."""
        if self._tvm_kind != "llvm" or self.kind == "cortex-m":
            return "generic"
        return arch_of_triple(self.triple)

    @property
    def is_host(self) -> bool:
        """True when code built for this target runs on this machine."""
        return self._tvm_kind == "llvm" and self.kind != "cortex-m" and self.arch == arch_of_triple("") and (
            not self.triple or self.triple.split("-")[0] == host_triple().split("-")[0])

    def missing_host_features(self) -> tuple[str, ...]:
        """CPU features this target's code may use (from its ``mcpu`` and ``mattr``) that this machine's CPU lacks,
        sorted; empty when the code runs here. Only for targets of this machine's architecture (else empty: see
        :attr:`is_host`)."""
        if not self.is_host:
            return ()
        from tvm.target import codegen

        isa = _ISA_FEATURES.get(self.arch, ())
        want = {f for f in codegen.llvm_get_cpu_features(self.tvm_target) if f.startswith(isa)}
        have = set(codegen.llvm_get_cpu_features(parse(DEFAULT).tvm_target))
        return tuple(sorted(want - have))

    @property
    def key(self) -> str:
        """What identifies the target in a tuning database (:func:`tuning_key`): kind, machine, cpu and
        attributes; e.g. ``llvm|x86_64|znver4|`` for ``host`` on a Zen 4, ``llvm|x86_64||`` for ``llvm``."""
        kind = self._tvm_kind if self.kind == "accel" else self.kind  # the accelerator's host CPU kernels
        return tuning_key(kind, self.triple, self.mcpu, [str(a) for a in self.tvm_target.attrs.get("mattr", [])])

    @property
    def cost_key(self) -> str:
        """The target string of cost-model workloads and measurement records (``"llvm"`` for x86-64 CPUs,
        ``"aarch64"`` for ARM; see :func:`arch_of_record`)."""
        if self.kind == "accel":
            return "accel"
        return "aarch64" if self.arch == "aarch64" else "llvm"

    @property
    def shipped_database(self) -> Path:
        """The tuning database shipped with tvm-mp (its entries are keyed by :attr:`key`)."""
        return SHIPPED_DATABASE

    @property
    def user_database(self) -> Path:
        """The user tuning database (:func:`user_database_path`), read before :attr:`shipped_database`."""
        return user_database_path()

    @property
    def default_cost_model(self) -> str:
        """Name of the cost model that costs plans for this target by default
        (:func:`tvm_mp.cost_models.select.default_cost_model`): ``"accel"`` for the accelerator (its simulator-backed
        model), ``"whole-model"`` for x86-64 CPUs (``host``, ``llvm``: the shipped whole-model latency predictor,
        trained on models built and timed on such a CPU; energy from the analytical CPU model, labelled modelled),
        ``"analytical"`` for the others."""
        if self.kind == "accel":
            return "accel"
        return "whole-model" if self.kind == "llvm" and self.arch == "x86_64" else "analytical"

    def has(self, feature: str) -> bool:
        """True when the LLVM target has ``feature`` (e.g. ``avx512vnni``, ``dotprod``) from its mcpu and mattr."""
        if self._tvm_kind != "llvm" or self.kind == "cortex-m":
            return False
        from tvm.target import codegen

        return bool(codegen.llvm_cpu_has_features([feature], self.tvm_target))

    def check_cross_compiler(self) -> str:
        """The cross C compiler that links for this target's architecture; a one-line error naming the Debian
        package when it is not on PATH."""
        cc, package = CROSS_COMPILERS.get(self.arch, (None, None))
        if cc is None:
            raise TargetError(f"cannot link a shared library for {self}: no cross compiler is known for "
                              f"architecture {self.arch!r}")
        if shutil.which(cc) is None:
            raise CrossCompilerMissing(f"linking for {self.arch} needs the cross compiler {cc}: install it "
                                       f"(apt-get install {package}) or put it on PATH")
        return cc

    def export_library(self, executable, path: str | Path) -> Path:
        """Write ``executable`` as a shared library for this target (cross-linked for another architecture)."""
        path = Path(path)
        if self.is_host or self._tvm_kind != "llvm":
            with atomic_path(path) as tmp:  # replaced whole: a kill mid-link keeps the previous library
                _tvm.export_library(executable, str(tmp))
            return path
        cc = self.check_cross_compiler()
        from tvm.support import cc as tvm_cc

        try:
            with atomic_path(path) as tmp:
                _tvm.export_library(executable, str(tmp), fcompile=tvm_cc.cross_compiler(cc))
        except Error:
            raise
        except Exception as err:  # the linker's output: keep its last line
            raise CompileError(f"{cc} failed to link {path.name}: {_tvm.error_line(err)}") from None
        return path

    def export(self, model, directory: Path) -> list[Path]:
        """Write the target's own artifacts of ``model`` into ``directory`` (the common files are
        :meth:`CompiledModel.export`'s): ``model.so`` for TVM builds; for aarch64 also ``bundle/``, the standalone
        C bundle (no TVM runtime); for Cortex-M only ``bundle/``, the C of :func:`tvm_mp.mcu.emit_network`."""
        directory = Path(directory)
        if self.kind == "cortex-m":
            from .deploy.cortexm import write_bundle as write_mcu_bundle

            return [write_mcu_bundle(model, directory / "bundle")]
        if model.executable is None:
            raise Error(f"this {self.name} model was read back by tvm_mp.load and holds no executable to export: "
                        "copy its artifact directory, or compile it again")
        written = []
        if self.arch == "aarch64" and model.lowered is not None:
            from .deploy.aarch64 import write_bundle

            written.append(write_bundle(model, directory / "bundle"))
        written.append(self.export_library(model.executable, directory / "model.so"))
        if self.kind == "accel":
            written.append(model.accel.write(directory))
        return written

    def to_json(self) -> dict:
        """The target as a JSON dict that :func:`parse` reads back (``name`` keeps the short name)."""
        out = {"name": self.name, "tvm": _plain(self.tvm_target.export())}
        if self.hardware is not None:
            out["accel"] = self.hardware.to_dict()
        return out

    def __str__(self) -> str:
        if self.kind == "accel":
            return f"{self.name} ({self.hardware.name}; host {self.arch}{', ' + self.mcpu if self.mcpu else ''})"
        return f"{self.name} ({self.kind}, {self.arch}{', ' + self.mcpu if self.mcpu else ''})"

    def __repr__(self) -> str:
        return f"CompileTarget({self.name!r}, {self.key!r})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, CompileTarget) and self.key == other.key and self.kind == other.kind
                and self.hardware == other.hardware)

    def __hash__(self) -> int:
        return hash(self.key)

    def __enter__(self):
        self.tvm_target.__enter__()
        return self

    def __exit__(self, *exc):
        return self.tvm_target.__exit__(*exc)


def _plain(value):
    """TVM's exported target config as plain JSON values (arrays as lists)."""
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items() if str(k) != "tag" or str(v)}
    if isinstance(value, (str, bytes)):
        return str(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return str(value)


def parse(target: Any = None) -> CompileTarget:
    """A :class:`CompileTarget` from any accepted form (see module docstring); ``None`` is this machine."""
    if isinstance(target, CompileTarget):
        return target
    if target is None:
        target = DEFAULT
    if isinstance(target, tvm.target.Target):
        return CompileTarget("custom", check(target))
    name = "custom"
    if isinstance(target, str):
        text = target.strip()
        if text == ACCEL:
            return accel_target()
        if text in ALIASES:
            name, target = text, dict(ALIASES[text])
            if name == "host":
                target["mcpu"] = host_cpu()
        elif text.startswith("{"):
            try:
                target = json.loads(text)
            except json.JSONDecodeError as err:
                raise TargetError(f"target JSON is malformed ({err.msg} at character {err.pos}): give e.g. "
                                  '{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}') from None
        elif text in (str(k) for k in tvm.target.Target.list_kinds()):  # "cuda", "opencl", ...: a TVM kind
            raise TargetError(_kind_message(text))
        else:
            raise TargetError(f"unknown target {target!r}: use one of {', '.join(ALIASES)}, accel, a "
                              'tvm.target.Target, or a JSON dict such as '
                              '{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}')
    if not isinstance(target, Mapping):
        raise TargetError(f"target must be a name, a dict or a tvm.target.Target, got {type(target).__name__}")
    target = dict(target)
    if target.get("kind") == ACCEL:
        return accel_target(_accel_config(target))
    if "tvm" in target and isinstance(target["tvm"], Mapping) and "accel" in target:  # CompileTarget.to_json()
        return accel_target(target["accel"], str(target.get("name", ACCEL)))
    if "tvm" in target and isinstance(target["tvm"], Mapping):  # CompileTarget.to_json()
        name = str(target.get("name", "custom"))
        target = dict(target["tvm"])
    if "kind" in target and (not isinstance(target["kind"], str) or target["kind"] not in KINDS):
        raise TargetError(_kind_message(target["kind"]))
    if target.get("kind") == "llvm" and all(isinstance(target.get(k, ""), str) for k in ("mtriple", "mcpu")):
        _check_llvm(target.get("mtriple", ""), target.get("mcpu", ""))  # before TVM, which logs its own warning
        _check_mattr(target.get("mtriple", ""), target.get("mcpu", ""), target.get("mattr"))
    try:
        tvm_target = tvm.target.Target(target)
    except Exception as err:  # TVM raises its own error types; give one line
        raise TargetError(f"invalid target {json.dumps(target, default=str)}: {_tvm.error_line(err)}") from None
    return CompileTarget(name, check(tvm_target))


#: The accelerator's target name (and JSON ``kind``).
ACCEL = "accel"


def _accel_config(target: Mapping):
    """The ``config`` of an ``{"kind": "accel", ...}`` target (None: the default description)."""
    unknown = sorted(set(target) - {"kind", "config"})
    if unknown:
        raise TargetError(f"unknown key {unknown[0]!r} in the accel target: give "
                          '{"kind": "accel", "config": "my_accel.json"} (config: a hardware description file, its '
                          "JSON text or a dict; see tvm_mp/accel/default.json)")
    return target.get("config")


def accel_target(config: Any = None, name: str = ACCEL) -> CompileTarget:
    """The accelerator target with the hardware description ``config``: None (the default description), a
    ``HardwareConfig``, a dict, JSON text or the path of a JSON file (validated: one-line errors with the fix)."""
    from .accel.hardware import HardwareConfig

    if config is None:
        hw = HardwareConfig.default()
    elif isinstance(config, HardwareConfig):
        hw = config
    elif isinstance(config, Mapping):
        hw = HardwareConfig.from_dict(config)
    elif isinstance(config, (str, os.PathLike)):
        hw = HardwareConfig.from_json(os.fspath(config))
    else:
        raise TargetError(f"accel target config must be a hardware description file, its JSON text or a dict, got "
                          f"{type(config).__name__}")
    host = dict(ALIASES["host"], mcpu=host_cpu())
    return CompileTarget(name, tvm.target.Target(host), hw)


def _kind_message(kind) -> str:
    return (f"target kind {kind!r} is not supported: tvm-mp builds CPU kernels only (kinds {', '.join(KINDS)}); "
            "use 'host', 'llvm', 'aarch64', 'accel', a Cortex-M name or a JSON dict with \"kind\": \"llvm\"")


def check(tvm_target: tvm.target.Target) -> tvm.target.Target:
    """``tvm_target`` when tvm-mp can build for it; else a :class:`TargetError` that says what to use instead:
    a kind other than ``llvm`` / ``c`` (a GPU or other device), an LLVM triple whose architecture this LLVM does
    not know, an ``mcpu`` LLVM does not know for the triple (LLVM would only warn and build for a generic
    CPU), or a ``mattr`` feature it does not know (it would only warn and ignore it)."""
    kind = str(tvm_target.kind.name)
    if kind not in KINDS:
        raise TargetError(_kind_message(kind))
    if kind == "llvm":
        triple, cpu = str(tvm_target.attrs.get("mtriple", "") or ""), str(tvm_target.attrs.get("mcpu", "") or "")
        _check_llvm(triple, cpu)
        _check_features(triple, cpu, tuple(str(a) for a in tvm_target.attrs.get("mattr", [])))
    return tvm_target


@functools.lru_cache(maxsize=64)
def _check_llvm(triple: str, cpu: str) -> None:
    from tvm.target import codegen

    if triple:
        arch = triple.split("-")[0]
        known = tuple(str(t) for t in codegen.llvm_get_targets())
        if not arch or not (arch.startswith(known) or arch in _X86_ARCHES):
            raise TargetError(f"unknown mtriple {triple!r}: this LLVM builds for architectures "
                              f"{', '.join(known[:12])}, ... (e.g. \"mtriple\": \"aarch64-linux-gnu\")")
    if cpu and not codegen.llvm_is_valid_cpu(cpu, triple):
        example = host_cpu() if not triple or arch_of_triple(triple) == arch_of_triple("") else "generic"
        raise TargetError(f"unknown mcpu {cpu!r} for {triple or 'this machine'}: LLVM would build for a generic "
                          f"CPU instead; give a CPU LLVM knows for that triple (e.g. {example!r}, see "
                          "`llc -mtriple=... -mcpu=help`) or leave mcpu out (target 'host' names this machine's)")


def _check_mattr(triple: str, cpu: str, mattr) -> None:
    """Refuse a ``mattr`` LLVM would ignore with a warning: entries that are not "+feature"/"-feature" strings, or
    features this LLVM does not know for the triple."""
    if mattr is None:
        return
    if isinstance(mattr, str) or not isinstance(mattr, (list, tuple)):
        raise TargetError(f'mattr must be a list of "+feature"/"-feature" strings, e.g. ["+neon", "+dotprod"]; '
                          f"got {mattr!r}")
    bad = [a for a in mattr if not isinstance(a, str) or len(a) < 2 or a[0] not in "+-"]
    if bad:
        raise TargetError(f"mattr entries must read \"+feature\" or \"-feature\" (e.g. \"+dotprod\"); got {bad[0]!r}")
    _check_features(triple, cpu, tuple(mattr))


@functools.lru_cache(maxsize=64)
def _check_features(triple: str, cpu: str, mattr: tuple[str, ...]) -> None:
    unknown = _tvm.unknown_llvm_features(triple, cpu, mattr)
    if unknown:
        raise TargetError(f"unknown CPU feature(s) {', '.join(unknown)} in mattr for {triple or 'this machine'}: LLVM "
                          "would ignore them; check the spelling (see `llc -mtriple=... -mattr=help`)")


@functools.lru_cache(maxsize=256)
def arch_of_record(target: str) -> str:
    """The architecture of a cost-model workload's or record's ``target`` string: ``"accel"`` for the
    accelerator, else :attr:`CompileTarget.arch` of the parsed target (``"llvm"`` -> ``"x86_64"``)."""
    text = target.strip()
    if "accel" in text.lower():
        return "accel"
    if text in ALIASES or text.startswith("{"):
        arch = parse(text).arch
    else:
        arch = arch_of_triple(text) if text else arch_of_triple("")
    return "x86_64" if arch == "generic" else arch
