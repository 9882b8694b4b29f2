"""A real TCP proxy on loopback that breaks connections on purpose (a bad clinic network).

Each accepted connection follows the next step of ``plan``; when the plan is
used up, connections pass through untouched:

``reset``  close the client's connection as soon as it is accepted;
``cut``    forward the first ``cut_after`` bytes of the request, then close both sides;
``stall``  read the request and never answer (the client's timeout must fire);
``slow``   pass through after ``delay`` seconds;
``pass``   forward both ways.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class FaultyProxy:
    def __init__(self, target_port: int, plan: list[str], *, cut_after: int = 600,
                 delay: float = 1.0) -> None:
        self.target_port, self.plan, self.cut_after, self.delay = target_port, list(plan), cut_after, delay
        self.seen: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            step = self.plan.pop(0) if self.plan else "pass"
            self.seen.append(step)
            threading.Thread(target=self._handle, args=(client, step), daemon=True).start()

    def _handle(self, client: socket.socket, step: str) -> None:
        if step == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            client.close()
            return
        if step == "stall":
            while not self._closed.is_set() and client.recv(65536):
                pass
            client.close()
            return
        if step == "slow":
            time.sleep(self.delay)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:  # the target is down: the client sees its connection close
            client.close()
            return
        if step == "cut":
            sent = 0
            while sent < self.cut_after:
                data = client.recv(self.cut_after - sent)
                if not data:
                    break
                upstream.sendall(data)
                sent += len(data)
            upstream.close()
            client.close()
            return
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self._closed.set()
        self._server.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]
