"""Network peers that misbehave, for testing the deadlines of tvm-mp's RPC client (:mod:`tvm_mp._rpc`).

* :class:`SilentServer` accepts TCP connections and never sends a byte: what a client sees of a frozen tracker,
  of a frozen RPC device server (SIGSTOP or a hung board: the kernel still accepts and keeps the connection), or of
  a port that belongs to something else that waits for the client to speak first.
* :class:`FakeTracker` speaks TVM's tracker protocol (magic number, length-prefixed JSON): its summary lists
  ``devices`` under ``key`` and it hands them out on request (each every time it is asked, unlike a real tracker);
  with no devices, a request is never answered (as a real tracker queues it while no device is free).

Both listen on 127.0.0.1 on a free port, serve from daemon threads and are context managers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading

TRACKER_MAGIC = 0x2F271


class _Listener:
    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.host, self.port = self._sock.getsockname()
        self.address = f"{self.host}:{self.port}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"{type(self).__name__}:{self.port}").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.append(conn)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        """Never answer (overridden by the tracker)."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for sock in [self._sock, *conns]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SilentServer(_Listener):
    """Accepts connections, reads nothing, answers nothing."""


class FakeTracker(_Listener):
    """A TVM RPC tracker look-alike that lists ``devices`` ((host, port) pairs) under ``key``."""

    def __init__(self, key: str, devices: list[tuple[str, int]] = ()):
        self.key = key
        self.devices = list(devices)
        self.requests = 0
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    @staticmethod
    def _recv(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _session(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError, ValueError):
            (magic,) = struct.unpack("<i", self._recv(conn, 4))
            if magic != TRACKER_MAGIC:
                return
            conn.sendall(struct.pack("<i", TRACKER_MAGIC))
            while True:
                (size,) = struct.unpack("<i", self._recv(conn, 4))
                message = json.loads(self._recv(conn, size))
                if message[0] == 6:  # summary
                    answer = [0, {"queue_info": {self.key: {"free": len(self.devices), "pending": 0}},
                                  "server_info": [{"key": f"server:{self.key}", "addr": list(d)}
                                                  for d in self.devices]}]
                elif message[0] == 4:  # request
                    self.requests += 1
                    if message[1] != self.key or not self.devices:
                        continue  # queued forever: no device will ever be free
                    host, port = self.devices[(self.requests - 1) % len(self.devices)]
                    answer = [0, [host, port, f"client:{self.key}:fake"]]
                else:
                    answer = [-1]
                data = json.dumps(answer).encode()
                conn.sendall(struct.pack("<i", len(data)) + data)
