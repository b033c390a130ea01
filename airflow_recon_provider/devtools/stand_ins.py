"""Demo stand-ins: small real servers on 127.0.0.1 that speak the APIs the provider calls.

They are **not** the real services. The demo (and only the demo) starts them so that the
runbook can run end to end on a laptop:

- :class:`DemoPspApi` — a PSP's ``GET /statements?psp=&from=&to=`` and ``GET /status``,
  serving the statement lines the PSP "really sent" (a snapshot taken when the scenario is
  seeded), for every demo PSP;
- :class:`DemoBillingCore` — billing-gateway-core's ``POST /payments/reconciliation``;
- :class:`DemoSlack` — Slack's Web API ``POST /api/chat.postMessage``;
- :class:`DemoSmtp` — an SMTP server (aiosmtpd) that keeps the messages instead of
  delivering them.

Each records what it received, so the demo can show what was sent. The HTTP servers are
the standard library's ``ThreadingHTTPServer``; nothing here is imported by the provider
itself.
"""

from __future__ import annotations

import abc
import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


class _JsonServer(abc.ABC):
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
        """``(status, JSON payload)`` for one request."""

    def start(self) -> _JsonServer:
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
                data = json.dumps(payload).encode()
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


@dataclass
class StatementLine:
    psp: str
    provider_reference: str
    transaction_type: str
    status: str
    amount_minor: int
    currency: str
    occurred_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "provider_reference": self.provider_reference,
            "transaction_type": self.transaction_type,
            "status": self.status,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


class DemoPspApi(_JsonServer):
    """Demo stand-in of the PSPs' APIs: statements per PSP and window, and ``/status``.

    :param lines: the statement lines each PSP sent (see :meth:`snapshot`).
    """

    name = "demo stand-in: PSP API"

    def __init__(self, lines: list[StatementLine] | None = None, port: int | None = None) -> None:
        super().__init__(port)
        self.lines = list(lines or [])
        self.requests: list[dict[str, str]] = []

    @staticmethod
    def snapshot(conn: Any) -> list[StatementLine]:
        """The statement lines now in ``psp_statement_lines``: what the PSPs said."""
        rows = conn.execute(
            "SELECT psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at"
            " FROM psp_statement_lines ORDER BY id"
        ).fetchall()
        return [StatementLine(r[0], r[1], r[2], r[3], int(r[4]), r[5], r[6]) for r in rows]

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        if path.rstrip("/").endswith("/status"):
            return 200, {"status": "ok"}
        if path.rstrip("/").endswith("/statements") and method == "GET":
            with self.lock:
                self.requests.append(dict(query))
            start = datetime.fromisoformat(query["from"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(query["to"].replace("Z", "+00:00"))
            psp = query.get("psp", "")
            lines = [
                line.as_json() for line in self.lines if line.psp == psp and start <= line.occurred_at < end
            ]
            return 200, {"statement_id": f"{psp}-{start:%Y%m%d%H}", "lines": lines}
        return 404, {"error": f"no such endpoint {method} {path}"}


class DemoBillingCore(_JsonServer):
    """Demo stand-in of billing-gateway-core: ``POST /payments/reconciliation`` queues a job."""

    name = "demo stand-in: billing-gateway-core"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.requests: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        if method == "POST" and path == "/payments/reconciliation":
            with self.lock:
                self.requests.append(
                    {"idempotency_key": headers.get("Idempotency-Key"), "json": json.loads(body or b"null")}
                )
                job = len(self.requests)
            return 202, {"job_id": f"demo-job-{job}", "status": "queued"}
        return 404, {"error": f"no such endpoint {method} {path}"}


class DemoSlack(_JsonServer):
    """Demo stand-in of Slack's Web API: ``chat.postMessage`` is kept, not posted."""

    name = "demo stand-in: Slack"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.posts: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        if method == "POST" and path.endswith("/chat.postMessage"):
            content_type = headers.get("Content-Type") or ""
            if "json" in content_type:
                message = json.loads(body or b"{}")
            else:
                message = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            with self.lock:
                self.posts.append(message)
                n = len(self.posts)
            return 200, {"ok": True, "channel": message.get("channel", "C0DEMO"), "ts": f"1700000000.{n:06d}"}
        return 404, {"ok": False, "error": "unknown_method"}

    @property
    def texts(self) -> list[str]:
        with self.lock:
            return [str(p.get("text", "")) for p in self.posts]


@dataclass
class _Recorder:
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 kept by the demo SMTP stand-in (not delivered)"


class DemoSmtp:
    """Demo stand-in of the finance mail relay: keeps every message, delivers none."""

    name = "demo stand-in: SMTP"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.recorder = _Recorder()
        self._controller: Any = None

    @property
    def url(self) -> str:
        return f"smtp://{LOCALHOST}:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.recorder.lock:
            return list(self.recorder.messages)

    def start(self) -> DemoSmtp:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.recorder, hostname=LOCALHOST, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class StandIns:
    """The four demo stand-ins, started together."""

    psp: DemoPspApi
    core: DemoBillingCore
    slack: DemoSlack
    smtp: DemoSmtp

    @classmethod
    def start(cls, statement_lines: list[StatementLine], ports: dict[str, int] | None = None) -> StandIns:
        ports = ports or {}
        return cls(
            psp=DemoPspApi(statement_lines, ports.get("psp")).start(),
            core=DemoBillingCore(ports.get("core")).start(),
            slack=DemoSlack(ports.get("slack")).start(),
            smtp=DemoSmtp(ports.get("smtp")).start(),
        )

    def stop(self) -> None:
        for server in (self.psp, self.core, self.slack, self.smtp):
            server.stop()

    def describe(self) -> list[tuple[str, str]]:
        return [(s.name, s.url) for s in (self.psp, self.core, self.slack, self.smtp)]

    def connections(self, psps: tuple[str, ...]) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` environment values pointing the provider at the stand-ins."""
        conns = {f"AIRFLOW_CONN_PSP_{psp.upper()}": f"{self.psp.url}/" for psp in psps}
        conns["AIRFLOW_CONN_BILLING_GATEWAY_CORE"] = json.dumps(
            {
                "conn_type": "http",
                "host": LOCALHOST,
                "port": self.core.port,
                "schema": "http",
                "password": "demo-core-token",
            }
        )
        conns["AIRFLOW_CONN_SLACK_INCIDENTS"] = json.dumps(
            {
                "conn_type": "slack",
                "password": "xoxb-demo-token",
                "extra": {"base_url": f"{self.slack.url}/api/"},
            }
        )
        conns["AIRFLOW_CONN_SMTP_FINANCE"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": LOCALHOST,
                "port": self.smtp.port,
                "extra": {
                    "disable_tls": True,
                    "disable_ssl": True,
                    "from_email": "reconciliation-demo@platform.io",
                    "timeout": 10,
                    "retry_limit": 0,
                },
            }
        )
        return conns
