"""Demo stand-ins: small real servers on 127.0.0.1 that speak the APIs the provider calls.

They are **not** the real services. The demo (and only the demo) starts them so that the
runbook can run end to end on a laptop:

- :class:`DemoPspApi` — a PSP's ``GET /statements?psp=&from=&to=`` and ``GET /status``,
  serving the statement lines the PSP "really sent" (a snapshot taken when the scenario is
  seeded), for every demo PSP;
- :class:`DemoBillingCore` — billing-gateway-core's ``POST /payments/reconciliation``;
- :class:`DemoSlack` — Slack's Web API ``POST /api/chat.postMessage``;
- :class:`DemoSmtp` — an SMTP server (aiosmtpd) that keeps the messages instead of
  delivering them;
- :class:`DemoPtaxApi` — the Banco Central do Brasil PTAX OData service's
  ``CotacaoMoedaDia`` (FX rates in reais), serving made-up rates;
- :class:`~.pagerduty_stand_in.DemoPagerDuty` — PagerDuty's Events API v2
  ``POST /v2/enqueue``, checking each event's schema and keeping the incidents by dedup key.

Each records what it received, so the demo can show what was sent. The HTTP servers are
the standard library's ``ThreadingHTTPServer``; nothing here is imported by the provider
itself.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote

from airflow_recon_provider.devtools._json_server import LOCALHOST, JsonServer, free_port


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


class DemoPspApi(JsonServer):
    """Demo stand-in of the PSPs' APIs: statements per PSP and window, and ``/status``.

    :param lines: the statement lines each PSP sent (see :meth:`snapshot`).
    """

    name = "demo stand-in: PSP API"

    def __init__(self, lines: list[StatementLine] | None = None, port: int | None = None) -> None:
        super().__init__(port)
        self.lines = list(lines or [])
        self.requests: list[dict[str, str]] = []
        #: (psp, cycle start) whose statement the PSP answers 503 for (an outage at that hour)
        self.outage: set[tuple[str, datetime]] = set()

    def fail_statements(self, psp: str, starts: list[datetime]) -> None:
        """Answer ``503`` for ``psp``'s statements of the cycles starting at ``starts``, until
        :meth:`end_outage` (the demo's real failed tries of ``fetch_psp_statements``)."""
        with self.lock:
            self.outage.update((psp, start.astimezone(UTC)) for start in starts)

    def end_outage(self) -> None:
        with self.lock:
            self.outage.clear()

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
            with self.lock:
                down = (psp, start.astimezone(UTC)) in self.outage
            if down:
                return 503, {"error": f"statement service of {psp} down for {start:%Y-%m-%d %H:%M} UTC"}
            lines = [
                line.as_json() for line in self.lines if line.psp == psp and start <= line.occurred_at < end
            ]
            return 200, {"statement_id": f"{psp}-{start:%Y%m%d%H}", "lines": lines}
        return 404, {"error": f"no such endpoint {method} {path}"}


class DemoBillingCore(JsonServer):
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


class DemoSlack(JsonServer):
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


#: the day's bulletins of the PTAX stand-in: (type, Brasília time, selling rate / closing rate)
_PTAX_BULLETINS = (
    ("Abertura", time(10, 9, 27, 331000), Decimal("1.0006")),
    ("Intermediário", time(11, 9, 31, 102000), Decimal("0.9997")),
    ("Intermediário", time(12, 9, 29, 864000), Decimal("1.0002")),
    ("Fechamento PTAX", time(13, 10, 2, 417000), Decimal(1)),
)


def _ptax_number(value: Decimal, like: Decimal) -> str:
    places = max(4, -like.normalize().as_tuple().exponent)
    return format(value.quantize(Decimal(1).scaleb(-places)), "f")


class DemoPtaxApi(JsonServer):
    """Demo stand-in of the Banco Central do Brasil PTAX OData service:
    ``GET <base>/CotacaoMoedaDia(moeda=@moeda,dataCotacao=@dataCotacao)?@moeda='EUR'&
    @dataCotacao='MM-DD-YYYY'&$format=json`` answers ``{"value": [bulletins]}`` in the
    service's shape, numbers written as exact decimals. A known ``(currency, day)`` gets four
    bulletins (Abertura, two Intermediário, Fechamento PTAX) whose closing selling rate
    (``cotacaoVenda``) is the rate given; an unknown one (weekend, holiday) an empty list.

    The connection's host is :attr:`base_url` (the service path included).

    :param rates: ``{(currency, day): rate}`` in reais per unit, or ``{(currency, day):
        [bulletin, ...]}`` to serve those bulletins as they are.
    :param fail_status: answer every request with this HTTP status (a service outage) ...
    :param fail_times: ... only this many times, then answer normally (``None``: always).
    """

    name = "demo stand-in: FX rates (BCB PTAX)"
    path = "/olinda/servico/PTAX/versao/v1/odata"
    resource = "CotacaoMoedaDia(moeda=@moeda,dataCotacao=@dataCotacao)"

    def __init__(
        self,
        rates: Mapping[tuple[str, date], Decimal | list[dict[str, Any]]] | None = None,
        port: int | None = None,
        *,
        fail_status: int | None = None,
        fail_times: int | None = None,
    ) -> None:
        super().__init__(port)
        self.rates = dict(rates or {})
        self.fail_status = fail_status
        self.fail_times = fail_times
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}{self.path}"

    def bulletins(self, currency: str, day: date) -> list[dict[str, Any]] | bytes:
        known = self.rates.get((currency, day))
        if known is None:
            return []
        if isinstance(known, list):
            return known
        items = []
        for kind, at, factor in _PTAX_BULLETINS:
            selling = known * factor
            buying = selling * Decimal("0.9998")
            usd = self.rates.get(("USD", day))
            parity = selling / usd if isinstance(usd, Decimal) and currency != "USD" else Decimal(1)
            items.append(
                f'{{"paridadeCompra": {_ptax_number(parity, Decimal("0.0001"))}, '
                f'"paridadeVenda": {_ptax_number(parity, Decimal("0.0001"))}, '
                f'"cotacaoCompra": {_ptax_number(buying, known)}, '
                f'"cotacaoVenda": {_ptax_number(selling, known)}, '
                f'"dataHoraCotacao": "{day.isoformat()} {at.isoformat(timespec="milliseconds")}", '
                f'"tipoBoletim": "{kind}"}}'
            )
        return ("[" + ", ".join(items) + "]").encode()

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        with self.lock:
            failing = self.fail_status is not None and (
                self.fail_times is None or sum(1 for r in self.requests if r["failed"]) < self.fail_times
            )
            self.requests.append({"path": unquote(path), "query": dict(query), "failed": failing})
        if failing:
            return self.fail_status, {"error": {"code": str(self.fail_status), "message": "demo outage"}}
        if method != "GET" or unquote(path) != f"{self.path}/{self.resource}":
            return 404, {"error": {"code": "404", "message": f"no such resource {method} {unquote(path)}"}}
        currency = query.get("@moeda", "").strip("'")
        raw_day = query.get("@dataCotacao", "").strip("'")
        try:
            day = datetime.strptime(raw_day, "%m-%d-%Y").date()
        except ValueError:
            return 400, {"error": {"code": "400", "message": f"dataCotacao {raw_day!r} is not MM-DD-YYYY"}}
        found = self.bulletins(currency.upper(), day)
        if isinstance(found, list):
            found = json.dumps(found).encode()
        context = f"{self.base_url}/$metadata#_CotacaoMoedaDia".encode()
        return 200, b'{"@odata.context": "' + context + b'", "value": ' + found + b"}"


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


#: the demo's PagerDuty integration key (32 characters, as the Events API wants)
DEMO_PAGERDUTY_ROUTING_KEY = "demo-pagerduty-routing-key-00032"


def _start_pagerduty(port: int | None) -> Any:
    from airflow_recon_provider.devtools.pagerduty_stand_in import DemoPagerDuty

    return DemoPagerDuty(port).start()


@dataclass
class StandIns:
    """The demo stand-ins, started together."""

    psp: DemoPspApi
    core: DemoBillingCore
    slack: DemoSlack
    smtp: DemoSmtp
    fx: DemoPtaxApi | None = None
    pagerduty: Any = None  # DemoPagerDuty (its own module imports this one)

    @classmethod
    def start(
        cls,
        statement_lines: list[StatementLine],
        ports: dict[str, int] | None = None,
        fx_rates: Mapping[tuple[str, date], Decimal] | None = None,
    ) -> StandIns:
        """Start every stand-in; the PTAX one serves ``fx_rates`` (default: the demo rates on
        the last 30 business days, :func:`~.demo_fx.demo_ptax_quotes`)."""
        if fx_rates is None:
            from airflow_recon_provider.devtools.demo_fx import demo_ptax_quotes

            fx_rates = demo_ptax_quotes()
        ports = ports or {}
        return cls(
            psp=DemoPspApi(statement_lines, ports.get("psp")).start(),
            core=DemoBillingCore(ports.get("core")).start(),
            slack=DemoSlack(ports.get("slack")).start(),
            smtp=DemoSmtp(ports.get("smtp")).start(),
            fx=DemoPtaxApi(fx_rates, ports.get("fx")).start(),
            pagerduty=_start_pagerduty(ports.get("pagerduty")),
        )

    @property
    def servers(self) -> list[Any]:
        servers = (self.psp, self.core, self.slack, self.smtp, self.fx, self.pagerduty)
        return [s for s in servers if s is not None]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def describe(self) -> list[tuple[str, str]]:
        return [(s.name, s.url) for s in self.servers]

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
        if self.fx is not None:
            conns["AIRFLOW_CONN_FX_RATES_SOURCE"] = json.dumps(
                {"conn_type": "http", "host": self.fx.base_url}
            )
        if self.pagerduty is not None:
            conns["AIRFLOW_CONN_PAGERDUTY_RECON"] = json.dumps(
                {
                    "conn_type": "pagerduty_events",
                    "host": self.pagerduty.url,
                    "password": DEMO_PAGERDUTY_ROUTING_KEY,
                    "extra": {"backoff_seconds": 0.2},
                }
            )
        return conns
