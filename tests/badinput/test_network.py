"""Network mistakes and faults through the API and the CLI: tracker addresses, ports, timeouts, a tracker that
never answers, a key nobody serves, a device that never answers. Class: bounded time on every network step.

Every case uses tight deadlines (0.5-1 s), so a case that does not end in a few seconds is a defect: the harness
kills it at the case timeout and it shows as ``hang``. The frozen device here is a socket that accepts and never
answers (:class:`~tvm_mp.testing.fake_rpc.SilentServer`): what a SIGSTOPped ``rpc_server`` looks like to the
client. Real TVM servers frozen with SIGSTOP are in tests/test_tune_rpc.py.
"""


from ._corpus import Case, cli_case, corpus_tests

TIMEOUT_S = 60.0
TUNE = ["tune", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w2a2", "--records", "{scratch}/r.jsonl"]


def art_onnx():
    from tvm_mp.models import digits_cnn_path

    return digits_cnn_path()


def _mod_plan():
    import tvm_mp

    mod = tvm_mp.load_onnx(art_onnx(), shapes={"input": (1, 1, 8, 8)})
    return mod, tvm_mp.PrecisionPlan({"conv2d_0": tvm_mp.Precision(2, 2)})


def _timed(fn, bound_s):
    import time

    start = time.monotonic()
    try:
        return fn()
    finally:
        took = time.monotonic() - start
        assert took < bound_s, f"took {took:.1f} s, bound {bound_s} s"


def _tune(art, name, rpc, bound_s, trials=2):
    """``tune`` on the digits CNN (loaded first: only the tuning is timed against ``bound_s``)."""
    from tvm_mp.tune import tune

    mod, plan = _mod_plan()
    return _timed(lambda: tune(mod, plan, rpc=rpc, trials=trials, records=art.scratch(name) / "r.jsonl",
                               progress=False), bound_s)


def _config(art, kw):
    from tvm_mp.tune import RPCConfig

    return repr(RPCConfig(**{"device_key": "board", **kw}))


def _parse(art, text):
    from tvm_mp.tune import RPCConfig

    return repr(RPCConfig.parse(text, "board"))


def _api_silent_tracker(art):
    from tvm_mp.testing.fake_rpc import SilentServer
    from tvm_mp.tune import RPCConfig

    with SilentServer() as silent:
        _tune(art, "api-silent", RPCConfig("board", silent.host, silent.port, connect_timeout_s=1), 1 + 5)


def _cli_silent_tracker(art):
    from tvm_mp.testing.fake_rpc import SilentServer
    from tvm_mp.testing.isolate import _run_cli

    with SilentServer() as silent:
        argv = [a.format(onnx=art.onnx, scratch=art.scratch("cli-silent")) for a in TUNE]
        # the command also loads the model (seconds on a loaded machine): the bound is loose, the API case tight
        return _timed(lambda: _run_cli([*argv, "--rpc-tracker", silent.address, "--key", "board",
                                        "--connect-timeout", "1"]), 1 + 25)


def _api_closed_port(art):
    from tvm_mp.measure.rpc import free_port
    from tvm_mp.tune import RPCConfig

    _tune(art, "api-closed", RPCConfig("board", "127.0.0.1", free_port(), connect_timeout_s=1), 1 + 5)


def _api_unknown_key(art):
    from tvm_mp.testing.fake_rpc import FakeTracker
    from tvm_mp.tune import RPCConfig

    with FakeTracker("someone-else", [("127.0.0.1", 1)]) as tracker:
        _tune(art, "api-key", RPCConfig("board", tracker.host, tracker.port, connect_timeout_s=1), 1 + 5)


def _source_unknown_key(art):
    """Cost-model collection over RPC for a key no server has: the tracker queues the request forever."""
    from tvm_mp.cost_models.base import Workload
    from tvm_mp.measure.rpc import RPCSource
    from tvm_mp.testing.fake_rpc import FakeTracker

    wl = Workload("dense", (1, 16), (4, 16), 2, 2, "bitserial", None, "acc", device="board")
    with FakeTracker("someone-else") as tracker:
        source = RPCSource("board", tracker=(tracker.host, tracker.port), connect_timeout_s=0.5, step_timeout_s=1)
        _timed(lambda: source.measure([wl]), 10)


def _api_frozen_device(art):
    """The tracker hands out a device that never answers: every job is recorded as failed with the reason, the
    run ends within its bound (2 x connect_timeout_s once no device answers, plus a build)."""
    from tvm_mp.testing.fake_rpc import FakeTracker, SilentServer
    from tvm_mp.tune import RPCConfig

    with SilentServer() as device, FakeTracker("board", [(device.host, device.port)]) as tracker:
        rpc = RPCConfig("board", tracker.host, tracker.port, connect_timeout_s=0.5, session_timeout_s=1)
        result = _tune(art, "api-frozen", rpc, 2 * 0.5 + 15)  # 2C, plus the build of the first job
    assert result.jobs == result.failed == 2 and result.measured == 0, result
    assert all("did not finish within" in why for why in result.failures.values()), result.failures
    assert result.database_path.exists()  # the run ended normally
    return result.failed


def _cli_frozen_device(art):
    from tvm_mp.testing.fake_rpc import FakeTracker, SilentServer
    from tvm_mp.testing.isolate import _run_cli

    with SilentServer() as device, FakeTracker("board", [(device.host, device.port)]) as tracker:
        argv = [a.format(onnx=art.onnx, scratch=art.scratch("cli-frozen")) for a in TUNE]
        return _timed(lambda: _run_cli([*argv, "--rpc-tracker", tracker.address, "--key", "board", "--trials", "1",
                                        "--connect-timeout", "0.5", "--session-timeout", "1"]), 2 * 0.5 + 35)


def _source_frozen_device(art):
    """Collection over RPC with a device that never answers: one line, nothing recorded for the workload."""
    from tvm_mp.cost_models.base import Workload
    from tvm_mp.measure.records import RecordStore
    from tvm_mp.measure.rpc import RPCSource
    from tvm_mp.measure.source import measure_into
    from tvm_mp.testing.fake_rpc import FakeTracker, SilentServer

    wl = Workload("dense", (1, 16), (4, 16), 2, 2, "bitserial", None, "acc", device="board")
    store = RecordStore(art.scratch("source-frozen") / "r.jsonl")
    with SilentServer() as device, FakeTracker("board", [(device.host, device.port)]) as tracker:
        source = RPCSource("board", tracker=(tracker.host, tracker.port), connect_timeout_s=0.5, step_timeout_s=1)
        try:
            _timed(lambda: measure_into(source, [wl], store), 10)
        finally:
            assert store.load(include_errors=True) == []  # not marked failed: a later run measures it


CASES = [
    Case("api-silent-tracker", _api_silent_tracker, "error", "did not answer the handshake within 1 s",
         "TuneError", timeout_s=TIMEOUT_S),
    Case("cli-silent-tracker", _cli_silent_tracker, "cli_error", "did not answer", timeout_s=TIMEOUT_S),
    Case("api-tracker-no-port", _parse, "error", "HOST:PORT", "TuneError", args=("localhost",)),
    Case("api-tracker-port-not-number", _parse, "error", "HOST:PORT", "TuneError", args=("127.0.0.1:90x",)),
    cli_case("cli-tracker-malformed", [*TUNE, "--rpc-tracker", "127.0.0.1", "--key", "board"], "HOST:PORT",
             timeout_s=TIMEOUT_S),
    cli_case("cli-tracker-unknown-host", [*TUNE, "--rpc-tracker", "no-such-host.invalid:9190", "--key", "board",
                                          "--connect-timeout", "1"], "looking up", timeout_s=TIMEOUT_S),
    cli_case("cli-tracker-empty", [*TUNE, "--rpc-tracker", "", "--key", "board"], "HOST:PORT", timeout_s=TIMEOUT_S),
    Case("api-port-closed", _api_closed_port, "error", "cannot reach the RPC tracker", "TuneError",
         timeout_s=TIMEOUT_S),
    cli_case("cli-port-out-of-range", [*TUNE, "--rpc-tracker", "127.0.0.1:70000", "--key", "board"], "1..65535",
             timeout_s=TIMEOUT_S),
    Case("api-port-zero", _config, "error", "1..65535", "TuneError", args=({"tracker_port": 0},)),
    Case("api-port-float", _config, "error", "port", "TuneError", args=({"tracker_port": 9190.5},)),
    Case("api-port-bool", _config, "error", "port", "TuneError", args=({"tracker_port": True},)),
    Case("api-connect-timeout-negative", _config, "error", "connect_timeout_s", "TuneError",
         args=({"connect_timeout_s": -1},)),
    Case("api-session-timeout-zero", _config, "error", "session_timeout_s", "TuneError",
         args=({"session_timeout_s": 0},)),
    Case("api-connect-timeout-nan", _config, "error", "connect_timeout_s", "TuneError",
         args=({"connect_timeout_s": float("nan")},)),
    Case("api-timeout-string", _config, "error", "session_timeout_s", "TuneError",
         args=({"session_timeout_s": "10"},)),
    Case("api-retries-negative", _config, "error", "retries", "TuneError", args=({"retries": -1},)),
    Case("api-key-empty", _config, "error", "device_key", "TuneError", args=({"device_key": ""},)),
    Case("api-config-ok", _config, "ok", args=({"connect_timeout_s": 0.5, "session_timeout_s": 2},)),
    cli_case("cli-connect-timeout-zero", [*TUNE, "--key", "board", "--connect-timeout", "0"], "connect_timeout_s",
             timeout_s=TIMEOUT_S),
    cli_case("cli-session-timeout-inf", [*TUNE, "--key", "board", "--session-timeout", "inf"],
             "session_timeout_s", timeout_s=TIMEOUT_S),
    Case("api-unknown-key", _api_unknown_key, "error", "no device registered under key 'board'", "TuneError",
         timeout_s=TIMEOUT_S),
    Case("source-unknown-key", _source_unknown_key, "error", "'board'", "RPCError", timeout_s=TIMEOUT_S),
    Case("api-frozen-device", _api_frozen_device, "ok", timeout_s=TIMEOUT_S),
    Case("cli-frozen-device", _cli_frozen_device, "cli_error", "did not finish within", timeout_s=TIMEOUT_S),
    Case("source-frozen-device", _source_frozen_device, "error", "did not finish within", "RPCError",
         timeout_s=TIMEOUT_S),
]


outcomes, test_case = corpus_tests(CASES)
