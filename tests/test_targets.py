"""tvm_mp.targets: every accepted target form parses into one CompileTarget, its properties, its one-line errors,
cross-linked exports, arch_of_record, and that no other module turns targets into strings."""

from __future__ import annotations

import ast
import json
import platform
import shutil
from pathlib import Path

import pytest
import tvm

import tvm_mp
from tvm_mp import targets
from tvm_mp.targets import CompileTarget, TargetError, arch_of_record, parse

AARCH64_JSON = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
    platform.machine().lower(), "generic")


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags of this machine from /proc/cpuinfo (None where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


# -- accepted forms ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", [None, "host", " host "])
def test_host_forms(form):
    t = parse(form)
    assert isinstance(t, CompileTarget)
    assert t.name == "host"
    assert t.kind == "llvm"
    assert t.is_host
    assert t.arch == HOST_ARCH
    assert t.mcpu == targets.host_cpu()
    assert targets.host_cpu() in t.key
    assert t.cost_key == ("aarch64" if HOST_ARCH == "aarch64" else "llvm")
    assert t == parse("host")


def test_llvm():
    t = parse("llvm")
    assert t.name == "llvm"
    assert t.kind == "llvm"
    assert t.is_host
    assert t.arch == HOST_ARCH
    assert t.mcpu == ""
    assert t.key.startswith("llvm|")
    assert t.cost_key == ("aarch64" if HOST_ARCH == "aarch64" else "llvm")
    assert t != parse("host")  # the generic CPU is not this machine's CPU


def test_default_cost_model_is_the_whole_model_predictor_on_x86_cpus():
    x86 = HOST_ARCH == "x86_64"
    assert parse("host").default_cost_model == parse("llvm").default_cost_model == (
        "whole-model" if x86 else "analytical")
    assert parse("aarch64").default_cost_model == "analytical"


def test_aarch64():
    t = parse("aarch64")
    assert t.name == "aarch64"
    assert t.kind == "llvm"
    assert t.arch == "aarch64"
    assert t.triple == "aarch64-linux-gnu"
    assert t.cost_key == "aarch64"
    assert t.key == "llvm|aarch64||+neon"
    if HOST_ARCH != "aarch64":
        assert not t.is_host
    assert not t.has("avx2")


@pytest.mark.parametrize("form", [AARCH64_JSON, json.dumps(AARCH64_JSON), "  " + json.dumps(AARCH64_JSON)],
                         ids=["dict", "text", "text-padded"])
def test_json_forms(form):
    t = parse(form)
    assert t.name == "custom"
    assert t.arch == "aarch64"
    assert t.cost_key == "aarch64"
    assert t == parse("aarch64")  # the same target as the alias
    assert t.key == parse("aarch64").key


def test_tvm_target():
    t = parse(tvm.target.Target(AARCH64_JSON))
    assert t.name == "custom"
    assert t.arch == "aarch64"
    assert t == parse("aarch64")
    host = parse(tvm.target.Target({"kind": "llvm", "mcpu": targets.host_cpu()}))
    assert host.is_host and host == parse("host")


def test_one_tuning_key_scheme():
    """host, the same CPU named with a full triple, and the keys older versions wrote all meet."""
    host = parse("host")
    machine = targets.host_triple().split("-")[0]
    assert host.key == f"llvm|{machine}|{targets.host_cpu()}|"
    spelled = parse({"kind": "llvm", "mtriple": f"{machine}-pc-linux-gnu", "mcpu": targets.host_cpu()})
    assert spelled.key == host.key
    assert parse("llvm").key == f"llvm|{machine}||" != host.key  # the generic CPU is another target
    assert targets.normalize_key(f"llvm||{targets.host_cpu()}|") == host.key  # written before the triple was kept
    assert targets.normalize_key(f"llvm|{targets.host_triple()}||") == parse("llvm").key
    assert targets.normalize_key("llvm|aarch64-linux-gnu||+neon") == parse("aarch64").key
    for t in (host, parse("llvm"), parse("aarch64"), parse("cortex-m4")):
        assert targets.normalize_key(t.key) == t.key
    shipped = json.loads(targets.SHIPPED_DATABASE.read_text())["records"]
    assert all(targets.normalize_key(k) == k for k in shipped)  # the shipped database is in the scheme


def test_user_home(monkeypatch, tmp_path):
    monkeypatch.setenv(targets.HOME_ENV, str(tmp_path / "mine"))
    assert targets.user_home() == tmp_path / "mine"
    assert parse("host").user_database == tmp_path / "mine" / "tuning.json" == targets.user_database_path()
    monkeypatch.delenv(targets.HOME_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert targets.user_home() == tmp_path / "cache" / "tvm-mp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert targets.user_home() == Path.home() / ".cache" / "tvm-mp"


def test_compile_target_returned_as_is():
    for name in ("host", "llvm", "aarch64"):
        t = parse(name)
        assert parse(t) is t


@pytest.mark.parametrize("name", ["host", "llvm", "aarch64"])
def test_to_json_round_trip(name):
    t = parse(name)
    data = t.to_json()
    assert data["name"] == name
    text = json.dumps(data)  # plain JSON values only
    for form in (data, text, json.loads(text)):
        back = parse(form)
        assert back == t
        assert back.name == name
        assert (back.key, back.arch, back.is_host, back.cost_key) == (t.key, t.arch, t.is_host, t.cost_key)


def test_non_llvm_target_is_generic():
    t = parse({"kind": "c"})
    assert t.kind == "c"
    assert t.arch == "generic"
    assert not t.is_host
    assert t.cost_key == "llvm"
    assert not t.has("avx2")


def test_hash_and_equality():
    assert len({parse("host"), parse(None), parse("aarch64"), parse(AARCH64_JSON), parse("llvm")}) == 3
    assert parse("host") != "host"


# -- features ---------------------------------------------------------------------------------------------------


def test_host_has_avx2_matches_cpuinfo():
    flags = _cpu_flags()
    if flags is None or HOST_ARCH != "x86_64":
        pytest.skip("needs an x86-64 /proc/cpuinfo")
    host = parse("host")
    assert host.has("avx2") == ("avx2" in flags)
    assert host.has("sse2") == ("sse2" in flags)
    assert host.has("avx512f") == ("avx512f" in flags)
    assert not parse("llvm").has("avx2")  # the generic x86-64 CPU has only the baseline
    assert not host.has("no-such-feature")


def test_target_feature_from_mattr():
    assert not parse("aarch64").has("dotprod")
    assert parse({**AARCH64_JSON, "mattr": ["+neon", "+dotprod"]}).has("dotprod")


# -- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["nonexistent-target", "", '{"kind": ', '{"kind": "llvm",}', 3, 2.5, ["llvm"],
                                 {"kind": "nonexistent"}, '{"kind": "nonexistent"}',
                                 {"kind": "llvm", "mattr": 5}],
                         ids=["unknown-name", "empty", "json-truncated", "json-trailing-comma", "int", "float",
                              "list", "dict-bad-kind", "text-bad-kind", "dict-bad-attr"])
def test_errors_are_one_line(bad):
    with pytest.raises(TargetError) as info:
        parse(bad)
    err = info.value
    assert isinstance(err, tvm_mp.Error)
    msg = str(err)
    assert msg
    assert "\n" not in msg
    assert "Traceback" not in msg
    assert err.__cause__ is None  # no chained TVM trace under the one line
    assert err.__context__ is None or err.__suppress_context__


def test_error_messages_say_what_to_fix():
    with pytest.raises(TargetError, match="unknown target 'nonexistent-target'.*host, llvm, aarch64"):
        parse("nonexistent-target")
    with pytest.raises(TargetError, match="malformed"):
        parse('{"kind": ')
    with pytest.raises(TargetError, match="got int"):
        parse(3)
    with pytest.raises(TargetError, match="nonexistent"):
        parse({"kind": "nonexistent"})


# -- export_library ---------------------------------------------------------------------------------------------


def _tiny_relax_module():
    from tvm import relax
    from tvm.script import relax as R

    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((4,), "float32"))
    y = relax.Var("y", R.Tensor((4,), "float32"))
    with bb.function("main", [x, y]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.add(x, y))
        bb.emit_func_output(out)
    return bb.get()


@pytest.fixture(scope="module")
def aarch64_executable():
    return tvm.compile(_tiny_relax_module(), parse("aarch64").tvm_target)


def test_export_aarch64_without_cross_compiler(aarch64_executable, tmp_path, monkeypatch):
    monkeypatch.setattr(targets.shutil, "which", lambda *a, **k: None)
    out = tmp_path / "net.so"
    with pytest.raises(TargetError) as info:
        parse("aarch64").export_library(aarch64_executable, out)
    msg = str(info.value)
    assert isinstance(info.value, tvm_mp.Error)
    assert "\n" not in msg and "Traceback" not in msg
    assert "gcc-aarch64-linux-gnu" in msg  # the Debian package
    assert "aarch64-linux-gnu-gcc" in msg  # the compiler
    assert not out.exists()


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="aarch64-linux-gnu-gcc not on PATH")
def test_export_aarch64_writes_aarch64_elf(aarch64_executable, tmp_path):
    out = parse("aarch64").export_library(aarch64_executable, tmp_path / "net.so")
    assert out == tmp_path / "net.so"
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert header[4] == 2  # ELFCLASS64
    assert header[5] == 1  # little endian
    assert int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def test_export_host(tmp_path):
    if HOST_ARCH != "x86_64":
        pytest.skip("checks the x86-64 machine number")
    exe = tvm.compile(_tiny_relax_module(), parse("host").tvm_target)
    out = parse("host").export_library(exe, tmp_path / "net.so")
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 62  # EM_X86_64


# -- arch_of_record ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("record, arch", [
    ("llvm", "x86_64"),
    ("aarch64", "aarch64"),
    ("accel", "accel"),
    (json.dumps({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}), "aarch64"),
    (json.dumps(AARCH64_JSON), "aarch64"),
    ("x86_64-linux-gnu", "x86_64"),
])
def test_arch_of_record(record, arch):
    if record == "llvm" and HOST_ARCH == "aarch64":
        arch = "aarch64"  # "llvm" is a generic CPU of this machine's architecture
    assert arch_of_record(record) == arch


# -- one place turns targets into strings -----------------------------------------------------------------------

FORBIDDEN = {"make_target", "target_key", "_target_name", "_target_key", "_is_host", "host_target_json"}
DELEGATES = {"parse", "arch_of_record"}


def _calls(func: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def test_no_other_module_turns_targets_into_strings():
    root = Path(tvm_mp.__file__).parent
    files = sorted(p for p in root.rglob("*.py") if p.name != "targets.py" or p.parent != root)
    assert len(files) > 10
    offenders, families = [], []
    for path in files:
        rel = path.relative_to(root.parent).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.name == "target_family":
                families.append(rel)
                if not _calls(node) & DELEGATES:
                    offenders.append(f"{rel}:{node.lineno} target_family does not delegate to tvm_mp.targets")
            elif node.name in FORBIDDEN:
                if node.name == "target_key" and rel == "tvm_mp/schedules/tuning.py":
                    assert "parse" in _calls(node), "tuning.target_key must delegate to targets.parse"
                    continue
                offenders.append(f"{rel}:{node.lineno} defines {node.name}")
    assert offenders == []
    assert families  # the check above saw the delegating target_family functions
