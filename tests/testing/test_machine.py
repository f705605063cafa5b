"""The machine description written beside every benchmark's figures."""

import json

from tvm_mp.testing.machine import FLAGS_OF_INTEREST, describe_machine, machine_line, tool_version


def test_describe_machine_is_json_and_complete():
    m = describe_machine(packages=("numpy", "no-such-package"), tools={"gcc": ["gcc", "--version"],
                                                                      "nothing": ["no-such-tool-xyz"]})
    assert json.loads(json.dumps(m)) == m
    assert m["cores"] >= 1 and m["cpu_model"]
    assert set(m["flags_of_interest"]) <= set(FLAGS_OF_INTEREST)
    assert m["packages"]["no-such-package"] == "missing" and m["packages"]["numpy"][0].isdigit()
    assert m["tools"]["nothing"] == "missing" and "gcc" in m["tools"]["gcc"].lower()
    assert m["tvm_threads"] >= 1 and m["llvm_mcpu"]
    line = machine_line(m)
    assert line.startswith("Machine: ") and m["cpu_model"] in line and "numpy" in line


def test_tool_version_of_a_failing_command():
    assert tool_version(["false"]) == "missing"
