"""Real stand-ins for the incident tests: a recording SMTP server (aiosmtpd) that can go
down and come back, a Slack Web API double for pytest-httpserver, connection JSON, and a
divergent PSP scenario. Fixtures using them are in ``conftest.py``."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Request, Response

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
UPDATES_DAG_FILE = DAGS_FOLDER / "billing_gateway_incident_updates.py"


# -- SMTP -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Recorder:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """A recording SMTP server on 127.0.0.1 that can go down and come back on its port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.recorder = _Recorder()
        self._controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self.recorder.lock:
            return list(self.recorder.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        with self.recorder.lock:
            return list(self.recorder.envelopes)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        # Controller.start() returns once the server answers a probe: no sleeping here
        self._controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None


# -- Slack ------------------------------------------------------------------------------------


@dataclass
class FakeSlack:
    """``POST /api/chat.postMessage`` like Slack's Web API; ``error`` answers ``ok: false``."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    error: str | None = None

    def __call__(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        if body is None:  # form-encoded, as the SDK sends without json=
            body = request.form.to_dict()
        self.authorizations.append(request.headers.get("Authorization"))
        if self.error:
            payload = {"ok": False, "error": self.error}
        else:
            self.posts.append(body)
            payload = {"ok": True, "channel": "C0INCIDENTS", "ts": f"1700000000.{len(self.posts):06d}"}
        return Response(json.dumps(payload), content_type="application/json")

    @property
    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.posts]


# -- connections --------------------------------------------------------------------------------

SENDER = "reconciliation@platform.io"


def smtp_conn_json(port: int) -> str:
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            # the local server speaks plain SMTP; one attempt, short timeout: a refused
            # connection is an outage to record, not something to hammer
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": SENDER,
                "timeout": 10,
                "retry_limit": 0,
            },
        }
    )


# -- a divergent PSP in the gateway database ------------------------------------------------------

WINDOW_START = datetime(2026, 11, 20, 10, tzinfo=UTC)
WINDOW_END = datetime(2026, 11, 20, 11, tzinfo=UTC)
# gateway: r1 1000, r2 500, r3 700 (2200 minor units); statement: r1 1000, r2 450
# -> r2 amount_mismatch 50, r3 missing_in_statement 700: 750 divergent in 2 keys, 34.0909%
DIVERGENT = (750, 2, 2200)


def statement_line(db, ref: str, amount: int, minute: int, *, psp: str = "stripe") -> None:
    db.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES (%s, %s, 'capture', 'captured', %s, 'BRL', %s, %s)",
        (psp, ref, amount, f"2026-11-20T10:{minute:02d}:00Z", f"{psp}-2026112010"),
    )


def next_slot(moment: datetime | None = None) -> datetime:
    """The first 30-minute boundary after ``moment`` (now): incidents opened in a test are
    opened at the real clock, so the DAG's logical dates must come after it."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    floor = moment.replace(minute=0 if moment.minute < 30 else 30, second=0, microsecond=0)
    return floor + timedelta(minutes=30)


# -- fixtures shared by the incident, remediation DAG and single-action tests --------------------
# (imported into their conftest modules by name)


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slack_api(httpserver) -> FakeSlack:
    api = FakeSlack()
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(api)
    return api


@pytest.fixture
def finance_conns(airflow_conns, smtp_server, slack_api, httpserver, monkeypatch):
    """``smtp_finance`` -> the local SMTP server, ``slack_incidents`` -> the fake Slack API."""
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_FINANCE", smtp_conn_json(smtp_server.port))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_INCIDENTS",
        json.dumps(
            {
                "conn_type": "slack",
                "password": "xoxb-test-token",
                "extra": {"base_url": httpserver.url_for("/api/")},
            }
        ),
    )
    return {"smtp": smtp_server, "slack": slack_api}
