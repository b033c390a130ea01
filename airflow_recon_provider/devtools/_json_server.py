"""The demo's HTTP stand-ins share one small threaded JSON server on 127.0.0.1."""

from __future__ import annotations

import abc
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


class JsonServer(abc.ABC):
    """A threaded HTTP server on 127.0.0.1 whose requests go to ``handle`` (each stand-in
    answers in its own)."""

    name = "stand-in"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @abc.abstractmethod
    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        """``(status, JSON payload)`` for one request (a ``bytes`` payload is sent as it is:
        JSON text written by the stand-in, e.g. with exact decimals)."""

    def start(self) -> JsonServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, payload = owner.handle(self.command, parts.path, query, body, self.headers)
                except Exception as exc:  # a stand-in bug must show, not hang the client
                    status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints
                return

        self._server = ThreadingHTTPServer((LOCALHOST, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


__all__ = ["LOCALHOST", "JsonServer", "free_port"]
