"""TVM RPC with a deadline on every network step: a frozen device or a silent tracker costs a timeout, not a hang.

TVM's own RPC client has no timeouts: ``rpc.connect_tracker`` retries a refused connection for a minute and then
waits forever for a tracker that accepts TCP but never answers; a device server that is frozen (SIGSTOP, a hung
board, a cable pulled without a reset) blocks the session handshake, ``upload``, ``load_module`` and the timed run
forever, because the kernel of the frozen machine (or the network) keeps the TCP connection open. Here:

* :class:`Tracker` speaks TVM's tracker protocol (magic number, then length-prefixed JSON) over a Python socket
  with a timeout on every exchange: connecting, the handshake, ``summary`` and ``request`` (waiting for a free
  device).
* :func:`connect` (the session handshake with the device) and every :meth:`Session.call` (upload, load and run)
  run TVM's blocking C++ client on a helper thread that the caller waits for until the step's deadline. When the
  deadline passes, the session's TCP socket is shut down -- found among this process's file descriptors by the
  device's address (``/proc/self/fd`` and ``/proc/net/tcp``, Linux) -- which makes the blocked call fail at once
  so the helper thread ends; the step raises :class:`~tvm_mp.errors.RPCError` naming the step, the device and the
  deadline. No thread is left behind to keep the process alive or to wake up during interpreter shutdown. (Where
  ``/proc`` is missing the helper thread is a daemon thread and is abandoned.)

Remote objects (modules, device arrays) must not outlive the step that made them: a step function returns plain
Python values, so no remote handle is freed later from another thread over a dead connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from typing import Any, Callable

from .errors import Error, RPCError

#: TVM's tracker protocol (``tvm/rpc/base.py``: ``RPC_TRACKER_MAGIC``, ``TrackerCode``).
TRACKER_MAGIC = 0x2F271
_CODE_SUCCESS = 0
_CODE_REQUEST = 4
_CODE_SUMMARY = 6
#: Seconds a step's helper thread gets to end after its socket was shut down (it fails at once in practice).
GRACE_S = 2.0
#: A tracker message longer than this is refused (a real one is a few hundred bytes).
MAX_MESSAGE_BYTES = 1 << 24


def seconds(value: float) -> str:
    """A duration for a message: ``2``, ``0.5``, ``0.439``."""
    return f"{value:.3g}"


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


class Tracker:
    """A connection to a TVM RPC tracker; every exchange ends within ``timeout_s`` (a context manager)."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.address = f"{host}:{port}"
        self.timeout_s = float(timeout_s)
        deadline = time.monotonic() + self.timeout_s
        self._sock = None
        # the name lookup too: a resolver that does not answer would otherwise hold this for its own timeouts
        infos = bounded(lambda: socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM), self.timeout_s,
                        lambda: None, f"looking up the RPC tracker's host {host!r}")
        failure = None
        for family, kind, proto, _, address in infos:  # every address of the name, while time is left
            if _left(deadline) <= 0:
                break
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(max(_left(deadline), 1e-3))
                sock.connect(address)
                self._sock = sock
                break
            except OSError as err:
                sock.close()
                failure = err
        if self._sock is None:
            if failure is None or isinstance(failure, (TimeoutError, socket.timeout)):
                raise RPCError(f"the RPC tracker at {self.address} did not accept a connection within "
                               f"{seconds(self.timeout_s)} s")
            raise RPCError(f"cannot reach the RPC tracker at {self.address}: {failure.strerror or failure}")
        try:
            self._send(struct.pack("<i", TRACKER_MAGIC), deadline, "the handshake")
            (magic,) = struct.unpack("<i", self._recv(4, deadline, "the handshake"))
        except BaseException:
            self.close()
            raise
        if magic != TRACKER_MAGIC:
            self.close()
            raise RPCError(f"{self.address} answered but is not a TVM RPC tracker (start one with "
                           "`python -m tvm.exec.rpc_tracker`)")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- one exchange --------------------------------------------------------------------------------------
    def _silent(self, what: str, waited: float) -> RPCError:
        self.close()
        return RPCError(f"the RPC tracker at {self.address} did not answer {what} within {seconds(waited)} s "
                        "(frozen, overloaded, or not a TVM RPC tracker)")

    def _send(self, data: bytes, deadline: float, what: str) -> None:
        try:
            self._sock.settimeout(max(_left(deadline), 1e-3))
            self._sock.sendall(data)
        except (TimeoutError, socket.timeout):
            raise self._silent(what, self.timeout_s) from None
        except OSError as err:
            self.close()
            raise RPCError(f"the RPC tracker at {self.address} closed the connection ({err.strerror or err})") \
                from None

    def _recv(self, nbytes: int, deadline: float, what: str, waited: float | None = None) -> bytes:
        chunks, got = [], 0
        while got < nbytes:
            left = _left(deadline)
            if left <= 0:
                raise self._silent(what, waited if waited is not None else self.timeout_s)
            try:
                self._sock.settimeout(left)
                chunk = self._sock.recv(min(nbytes - got, 1 << 16))
            except (TimeoutError, socket.timeout):
                raise self._silent(what, waited if waited is not None else self.timeout_s) from None
            except OSError as err:
                self.close()
                raise RPCError(f"the RPC tracker at {self.address} closed the connection "
                               f"({err.strerror or err})") from None
            if not chunk:
                self.close()
                raise RPCError(f"the RPC tracker at {self.address} closed the connection during {what}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _exchange(self, message: list, what: str, wait_s: float | None = None) -> Any:
        if self._sock is None:
            raise RPCError(f"the connection to the RPC tracker at {self.address} is closed")
        waited = self.timeout_s if wait_s is None else float(wait_s)
        deadline = time.monotonic() + waited
        data = json.dumps(message).encode()
        self._send(struct.pack("<i", len(data)) + data, time.monotonic() + self.timeout_s, what)
        (size,) = struct.unpack("<i", self._recv(4, deadline, what, waited))
        if not 0 < size <= MAX_MESSAGE_BYTES:
            self.close()
            raise RPCError(f"{self.address} sent a malformed answer to {what}: not a TVM RPC tracker")
        try:
            return json.loads(self._recv(size, deadline, what, waited).decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.close()
            raise RPCError(f"{self.address} sent a malformed answer to {what}: not a TVM RPC tracker") from None

    # ---- the calls -----------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The tracker's summary: ``{"queue_info": {key: {"free", "pending"}}, "server_info": [...]}``."""
        answer = self._exchange([_CODE_SUMMARY], "a summary request")
        if not (isinstance(answer, list) and len(answer) == 2 and answer[0] == _CODE_SUCCESS
                and isinstance(answer[1], dict)):
            raise RPCError(f"{self.address} sent an unexpected summary ({str(answer)[:80]}): not a TVM RPC tracker")
        return answer[1]

    def request(self, key: str, wait_s: float, priority: int = 1) -> tuple[str, int, str]:
        """(host, port, match key) of a free device under ``key``, waiting at most ``wait_s`` for one to be free.

        The tracker hands the device to this request only; closing this connection without using it puts the
        device back (a request still queued at the tracker is dropped with the connection).
        """
        answer = self._exchange([_CODE_REQUEST, key, "", priority],
                                f"a request for a device under key {key!r} (none free or none registered)", wait_s)
        try:
            code, (host, port, matchkey) = answer
            if code != _CODE_SUCCESS:
                raise ValueError
            return str(host), int(port), str(matchkey)
        except (TypeError, ValueError):
            raise RPCError(f"{self.address} sent an unexpected answer to a device request "
                           f"({str(answer)[:80]})") from None


# ---- the sockets of this process -------------------------------------------------------------------------------
def _own_socket_fds() -> dict[int, int]:
    """inode -> file descriptor of this process's sockets ({} where /proc/self/fd does not exist)."""
    found = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            link = os.readlink(f"/proc/self/fd/{name}")
            if link.startswith("socket:["):
                found[int(link[8:-1])] = int(name)
    return found


def _parse_address(field: str) -> tuple[str, int]:
    host_hex, port_hex = field.split(":")
    raw = bytes.fromhex(host_hex)
    # the kernel prints each 32-bit word of the address in host byte order
    words = b"".join(struct.pack("=I", int.from_bytes(raw[i:i + 4], "big")) for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port_hex, 16)


def _peers() -> dict[int, tuple[str, int]]:
    """inode -> (remote ip, remote port) of every TCP socket of this network namespace (IPv4 and IPv6)."""
    peers = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            with contextlib.suppress(ValueError, IndexError, OSError):
                peers[int(parts[9])] = _parse_address(parts[2])
    return peers


def _addresses(host: str, port: int) -> set[tuple[str, int]]:
    """Every (ip, port) ``host`` resolves to, IPv4 also in its IPv4-mapped IPv6 form."""
    out = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            ip = info[4][0]
            out.add((ip, int(port)))
            if ":" not in ip:
                out.add((f"::ffff:{ip}", int(port)))
    return out


def sockets_to(host: str, port: int) -> set[int]:
    """Inodes of this process's TCP sockets connected (or connecting) to ``host:port``."""
    wanted = _addresses(host, port)
    own = _own_socket_fds()
    if not wanted or not own:
        return set()
    return {inode for inode, peer in _peers().items() if inode in own and peer in wanted}


def shutdown_sockets(inodes: set[int]) -> int:
    """Shut down (not close: their owner closes them) this process's sockets with these inodes; how many."""
    done = 0
    for inode, fd in _own_socket_fds().items():
        if inode not in inodes:
            continue
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=fd)
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == f"socket:[{inode}]":  # still the same socket
                    sock.shutdown(socket.SHUT_RDWR)
                    done += 1
            except OSError:
                pass
            finally:
                sock.detach()
    return done


# ---- bounded calls into TVM's blocking client ----------------------------------------------------------------
def bounded(fn: Callable[[], Any], timeout_s: float, on_timeout: Callable[[], None], what: str,
            budget: str | None = None) -> Any:
    """``fn()`` on a helper thread; its result, or :class:`RPCError` when it has not ended after ``timeout_s``
    (``on_timeout`` is then called to make it end: shut its sockets down). ``budget``: how the message names the
    deadline when ``timeout_s`` is what is left of a larger one (e.g. "the 120 s a job may take")."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: B036 -- handed to the caller
            box["error"] = err
        finally:
            done.set()

    thread = threading.Thread(target=run, name=f"tvm_mp-rpc: {what}", daemon=True)
    thread.start()
    if not done.wait(max(float(timeout_s), 0.0)):
        on_timeout()
        done.wait(GRACE_S)
        limit = budget or f"{seconds(max(float(timeout_s), 0.0))} s"
        raise RPCError(f"{what} did not finish within {limit} (the device or the network is not answering)")
    if "error" in box:
        err = box.pop("error")
        if isinstance(err, Error):  # RPCError, or a mistake in the settings: as it is
            raise err
        from . import _tvm

        raise RPCError(f"{what} failed: {_tvm.error_line(err)}") from None
    return box.pop("value")


class Session:
    """A TVM RPC session with one device; :meth:`call` runs a step on it with a deadline.

    After a step times out, the session is closed (its socket was shut down); every later call raises.
    """

    def __init__(self, remote, host: str, port: int, inodes: set[int]):
        self._remote = remote
        self.address = f"{host}:{port}"
        self._inodes = inodes

    def call(self, step: str, fn: Callable[[Any], Any], timeout_s: float, budget: str | None = None) -> Any:
        """``fn(remote)`` -- returning plain values, not remote handles -- within ``timeout_s`` (``budget``: see
        :func:`bounded`)."""
        remote = self._remote
        if remote is None:
            raise RPCError(f"{step} on the device at {self.address}: the session is closed")
        try:
            return bounded(lambda: fn(remote), timeout_s, self.abort, f"{step} on the device at {self.address}",
                           budget)
        except RPCError:
            self.abort()
            raise

    def abort(self) -> None:
        """Shut the session's socket down (a blocked call fails at once) and drop it."""
        if self._inodes:
            shutdown_sockets(self._inodes)
        self._remote = None

    def close(self) -> None:
        self._remote = None


def upload_and_run(session: Session, lib, run: Callable[[Any, Any], Any], timeout_s: float, budget: str) -> Any:
    """Upload the library file ``lib`` to the device, load it there and return ``run(module, device)`` (plain values,
    not remote handles), the three steps sharing one deadline of ``timeout_s`` (``budget`` names it in the
    message of a step that misses it: see :func:`bounded`)."""
    deadline = time.monotonic() + timeout_s
    session.call("upload", lambda remote: remote.upload(str(lib)), deadline - time.monotonic(), budget)

    def step(remote):  # remote handles live and die inside the step
        return run(remote.load_module(lib.name), remote.cpu())

    return session.call("run", step, deadline - time.monotonic(), budget)


def connect(host: str, port: int, key: str, session_timeout_s: float, timeout_s: float,
            budget: str | None = None) -> Session:
    """A session with the device server at ``host:port`` (``key``: the match key a tracker handed out), the
    handshake bounded by ``timeout_s`` (``budget``: see :func:`bounded`); the server ends the session after
    ``session_timeout_s``."""
    from tvm import rpc

    before = sockets_to(host, port)
    started: dict[str, set[int]] = {}

    def handshake():
        remote = rpc.connect(host, port, key, session_timeout=session_timeout_s)
        started["inodes"] = sockets_to(host, port) - before
        return remote

    def abort():
        shutdown_sockets(sockets_to(host, port) - before)

    remote = bounded(handshake, timeout_s, abort, f"the session handshake with the device at {host}:{port}", budget)
    return Session(remote, host, port, started.get("inodes", set()))
