"""A scripted HTTP/1.1 server on a raw socket, for what no real model server sends: garbage, broken streams.

`reply(request_bytes) -> list of (delay seconds, bytes)` chunks written in order; `keep_alive` keeps
the connection for the next request. Records every request (head + body) it read.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable


class RawServer:
    def __init__(self, reply: Callable[[bytes], list[tuple[float, bytes]]], keep_alive: bool = True,
                 tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.reply = reply
        self.keep_alive = keep_alive
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                return
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                try:
                    for delay, chunk in self.reply(self.requests[-1]):
                        time.sleep(delay)
                        conn.sendall(chunk)
                except OSError:
                    return
                if not self.keep_alive:
                    return

    def close(self) -> None:
        self._stop = True
        self._sock.close()


def http_response(body: bytes, status: str = "200 OK", ctype: str = "application/json", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def sse_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
