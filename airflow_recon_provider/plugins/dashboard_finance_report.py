"""The dashboard's side of Detecção 2 — finance's reports, in ``[recon] language`` (pt-BR by
default, through the gettext catalog).

- The *Reportar divergência* form on the main page (:func:`render_finance_form`): PSP,
  window in UTC (echoed in UTC and America/Sao_Paulo before it is sent), finance ticket,
  description. The browser checks what it can (the same rules as the server), then asks
  ``POST /recon/api/finance-report/check`` (the server's own check:
  :func:`~airflow_recon_provider.reconciliation.finance_report.parse_finance_report` with the
  configured PSPs and maximum window), then triggers ``billing_gateway_finance_report``
  through Airflow's REST API as the logged-in user, like the remediation form. Every
  problem is shown in the form, next to its field.
- The finance report on the incident page (:func:`finance_reports`): ticket, description,
  who reported and when, the dry run started, on-call told in Slack, and the dry run's
  findings once it has run — divergence by kind and currency, gateway vs statement per
  status and currency, the ledger beside the gateway per status and currency. Amounts
  through ``format_money`` in their own currency; currencies are never added together.
"""

# no ``from __future__ import annotations``: FastAPI reads the annotations of the route
# defined inside add_finance_report_routes (see dashboard_app)
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_recon_provider.i18n import _, install_jinja, language_scope
from airflow_recon_provider.plugins.dashboard_data import DashboardUnavailable
from airflow_recon_provider.reconciliation import steps
from airflow_recon_provider.reconciliation.finance_report import (
    DESCRIPTION_MAX,
    FINANCE_REPORT_DAG_ID,
    FINANCE_TICKET_PATTERN,
    LOCAL_TIMEZONE,
    FinanceReportError,
    FinanceReportStep,
    parse_finance_report,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.paging import PAGING_STEP

if TYPE_CHECKING:
    import jinja2
    from fastapi import FastAPI

    from airflow_recon_provider.plugins.dashboard_data import Dashboard, DashboardReader
    from airflow_recon_provider.plugins.dashboard_incidents import IncidentDetail
    from airflow_recon_provider.reconciliation.incidents import IncidentEvent

log = logging.getLogger(__name__)

#: what a report's form sends at most (a description of DESCRIPTION_MAX characters and the rest)
CHECK_BODY_MAX = 16 * 1024
_KIND_ORDER = {kind.value: n for n, kind in enumerate(ALL_KINDS)}


# -- the form ------------------------------------------------------------------------------------


@cache
def _env() -> "jinja2.Environment":
    import jinja2

    from airflow_recon_provider.plugins._formatting import _resource

    return install_jinja(
        jinja2.Environment(
            loader=jinja2.FunctionLoader(_resource), autoescape=True, undefined=jinja2.StrictUndefined
        )
    )


def _max_window_hours() -> int:
    from airflow_recon_provider.reconciliation.config import ReconConfig

    try:
        return int(ReconConfig.load().max_window.total_seconds() // 3600)
    except Exception:  # the page says what is wrong with the configuration elsewhere
        from airflow_recon_provider.reconciliation.window import DEFAULT_MAX_WINDOW

        return int(DEFAULT_MAX_WINDOW.total_seconds() // 3600)


def render_finance_form(dashboard: "Dashboard") -> str:
    """The *Reportar divergência* form, pre-filled with the dashboard's window (UTC)."""
    from airflow_recon_provider.plugins._formatting import input_time

    return (
        _env()
        .get_template("finance_report_form.html.j2")
        .render(
            psps=[(p.psp, p.display_name) for p in dashboard.psps],
            window_start=input_time(dashboard.window.start),
            window_end=input_time(dashboard.window.end),
            dag_id=FINANCE_REPORT_DAG_ID,
            trigger_api=f"api/v2/dags/{quote(FINANCE_REPORT_DAG_ID)}/dagRuns",
            runs=f"dags/{quote(FINANCE_REPORT_DAG_ID)}/runs/",
            ticket_pattern=FINANCE_TICKET_PATTERN,
            description_max=DESCRIPTION_MAX,
            max_window_hours=_max_window_hours(),
            local_timezone=LOCAL_TIMEZONE,
        )
    )


def check_report(body: Any, *, reader: "DashboardReader") -> dict[str, Any]:
    """The server's check of a report the form is about to send: ``{"ok": true, "conf"}`` (the
    conf normalized to UTC), or :class:`FinanceReportError` with every problem (in the language
    in force)."""
    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.reconciliation.errors import UnknownPspError

    if not isinstance(body, Mapping):
        raise FinanceReportError({"form": _("The form did not send a JSON object.")})
    config = ReconConfig.load()
    report = parse_finance_report(
        psp=body.get("psp"),
        window_start=body.get("window_start"),
        window_end=body.get("window_end"),
        finance_ticket=body.get("finance_ticket"),
        description=body.get("description"),
        known_psps=config.psp_names if config.psps else None,
        max_window=config.max_window,
    )
    if not config.psps:  # no configured list: the PSP must appear in payment_intents
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

        try:
            BillingGatewayHook(billing_gateway_conn_id=reader.conn_id, config=config).resolve_psp(report.psp)
        except UnknownPspError:
            raise FinanceReportError(
                {
                    "psp": _(
                        "PSP %(psp)s is unknown: it does not appear in payment_intents.", psp=repr(report.psp)
                    )
                }
            ) from None
    conf = report.as_dict()
    conf["window_start"] = report.window.start.isoformat().replace("+00:00", "Z")
    conf["window_end"] = report.window.end.isoformat().replace("+00:00", "Z")
    return {"ok": True, "conf": conf}


def add_finance_report_routes(
    app: "FastAPI", *, reader: "DashboardReader", dependencies: Sequence[Any]
) -> None:
    """``POST /recon/api/finance-report/check``: the server's check of the form (same login
    and DAG read permission as the dashboard; it reads, never writes)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.post("/api/finance-report/check", dependencies=list(dependencies))
    async def finance_report_check(request: Request) -> JSONResponse:
        raw = await request.body()
        with language_scope():
            return check(raw)

    def check(raw: bytes) -> JSONResponse:
        if len(raw) > CHECK_BODY_MAX:
            return JSONResponse(
                {"ok": False, "errors": {"form": _("The form sent is too large.")}}, status_code=413
            )
        try:
            import json

            body = json.loads(raw or b"null")
        except ValueError:
            return JSONResponse(
                {"ok": False, "errors": {"form": _("The form did not send valid JSON.")}}, status_code=400
            )
        try:
            return JSONResponse(check_report(body, reader=reader))
        except FinanceReportError as exc:
            return JSONResponse({"ok": False, "errors": exc.problems}, status_code=400)
        except DashboardUnavailable as exc:
            return JSONResponse({"ok": False, "errors": {"form": exc.message}}, status_code=exc.status_code)
        except Exception as exc:  # the database behind the PSP check (no configured list)
            log.warning("finance report check failed: %s", exc, exc_info=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return JSONResponse(
                {
                    "ok": False,
                    "errors": {
                        "form": _(
                            "The gateway database could not be read to check the PSP: %(error)s. Try again.",
                            error=first,
                        )
                    },
                },
                status_code=503,
            )


# -- on the incident page ---------------------------------------------------------------------


@dataclass(frozen=True)
class FinanceReportView:
    """One finance report on an incident, with what came of it."""

    event: "IncidentEvent"
    slack: "tuple[IncidentEvent, ...]"
    findings: "IncidentEvent | None"
    #: the report's PagerDuty event(s) (low urgency; ``communication.pagerduty``)
    pagerduty: "tuple[IncidentEvent, ...]" = ()

    @property
    def details(self) -> Mapping[str, Any]:
        return self.event.details

    @property
    def ticket(self) -> str:
        return str(self.details.get("finance_ticket") or "")

    @property
    def description(self) -> str:
        return str(self.details.get("description") or "")

    @property
    def reported_by(self) -> str:
        return str(self.details.get("reported_by") or self.event.actor)

    @property
    def reported_at(self) -> datetime:
        value = self.details.get("reported_at")
        try:
            return datetime.fromisoformat(str(value)) if value else self.event.created_at
        except ValueError:
            return self.event.created_at

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        try:
            return (
                datetime.fromisoformat(str(self.details["window_start"])),
                datetime.fromisoformat(str(self.details["window_end"])),
            )
        except (KeyError, ValueError):
            return None

    @property
    def opened(self) -> bool:
        return self.details.get("incident_action") == "opened"

    @property
    def dry_run_id(self) -> str | None:
        run = self.details.get("dry_run")
        return str(run.get("run_id")) if isinstance(run, Mapping) and run.get("run_id") else None

    @property
    def dry_run_href(self) -> str | None:
        """The dry run in the Airflow UI, relative to ``/recon/``."""
        from airflow_recon_provider.reconciliation.finance_report import REMEDIATION_DAG_ID

        if not self.dry_run_id:
            return None
        return f"../dags/{quote(REMEDIATION_DAG_ID)}/runs/{quote(self.dry_run_id, safe='')}"

    @property
    def slack_status(self) -> str | None:
        return str(self.slack[-1].details.get("status")) if self.slack else None

    @property
    def pagerduty_text(self) -> str | None:
        """How on-call was told in PagerDuty (in the language in force), or ``None`` when no
        event was sent."""
        if not self.pagerduty:
            return None
        details = self.pagerduty[-1].details
        if details.get("status") != "sent":
            return _("not told (%(reason)s)", reason=details.get("error") or details.get("status"))
        if str(details.get("urgency") or "").startswith("low"):
            return _("told with low urgency (severity info)")
        return _("attached to the incident's alert already open")

    def findings_view(self) -> dict[str, Any] | None:
        return findings_view(self.findings.details) if self.findings else None

    def as_dict(self) -> dict[str, Any]:
        window = self.window
        return {
            "event_id": self.event.id,
            "finance_ticket": self.ticket,
            "description": self.description,
            "reported_by": self.reported_by,
            "reported_at": self.reported_at.isoformat(),
            "window_start": window[0].isoformat() if window else None,
            "window_end": window[1].isoformat() if window else None,
            "incident_action": self.details.get("incident_action"),
            "dry_run_run_id": self.dry_run_id,
            "slack": self.slack_status,
            "pagerduty": dict(self.pagerduty[-1].details) if self.pagerduty else None,
            "findings": dict(self.findings.details) if self.findings else None,
            "findings_recorded_at": self.findings.created_at.isoformat() if self.findings else None,
        }


def finance_reports(detail: "IncidentDetail") -> list[FinanceReportView]:
    """The incident's finance reports, oldest first, each with its Slack message and the
    latest findings its dry run recorded."""
    reports = []
    for event in detail.events:
        if event.step != FinanceReportStep.REPORTED:
            continue
        dry_run = event.details.get("dry_run")
        dry_id = dry_run.get("run_id") if isinstance(dry_run, Mapping) else None
        findings = [
            e
            for e in detail.events
            if e.step == FinanceReportStep.FINDINGS
            and dry_id
            and isinstance(e.details.get("dry_run"), Mapping)
            and e.details["dry_run"].get("run_id") == dry_id
        ]
        slack = tuple(
            e for e in detail.events if e.step == FinanceReportStep.SLACK and e.run_id == event.run_id
        )
        pagerduty = tuple(
            e
            for e in detail.events
            if e.step == PAGING_STEP
            and e.run_id == event.run_id
            and e.details.get("finance_ticket") == event.details.get("finance_ticket")
        )
        reports.append(FinanceReportView(event, slack, findings[-1] if findings else None, pagerduty))
    return reports


def _money(amount: Any, currency: str | None) -> str:
    from airflow_recon_provider.plugins._formatting import money

    return money(int(amount), currency) if amount is not None else "-"


def findings_view(details: Mapping[str, Any]) -> dict[str, Any]:
    """The findings as the page shows them: each currency's divergence by kind in its own
    currency, the converted total with its rates, gateway vs statement per status and
    currency, and the ledger beside the gateway per status and currency."""
    from airflow_recon_provider.plugins._formatting import count, pct

    divergence = details.get("divergence") or {}
    rc = divergence.get("reporting_currency")
    currencies = []
    for code, fig in sorted((divergence.get("by_currency") or {}).items()):
        kinds = sorted((fig.get("by_kind") or {}).items(), key=lambda kv: _KIND_ORDER.get(kv[0], 99))
        currencies.append(
            {
                "currency": code,
                "divergent_count": count(fig.get("divergent_count") or 0),
                "divergent_amount": _money(fig.get("divergent_amount_minor") or 0, code),
                "gateway_count": count(fig.get("gateway_count") or 0),
                "gateway_amount": _money(fig.get("gateway_amount_minor") or 0, code),
                "no_rate": code in (divergence.get("unconverted_currencies") or ()),
                "kinds": [
                    {
                        "kind": kind,
                        "label": steps.kind_name(kind),
                        "count": count(total.get("count") or 0),
                        "amount": _money(total.get("amount_minor") or 0, code),
                    }
                    for kind, total in kinds
                ],
            }
        )
    rates = ""
    if divergence.get("divergent_amount_minor") is not None and divergence.get("fx_rates"):
        from airflow_recon_provider.plugins._formatting import rates as rates_text
        from airflow_recon_provider.reconciliation.figures import Figures
        from airflow_recon_provider.reconciliation.incidents import IncidentInputError

        try:
            rates = rates_text(Figures.from_dict(divergence))
        except IncidentInputError:
            rates = _("the recorded rates cannot be read")
    lines = [
        {
            "status": line.get("status"),
            "currency": line.get("currency"),
            "gateway_count": count(line.get("gateway_count") or 0),
            "gateway_amount": _money(line.get("gateway_amount_minor") or 0, line.get("currency")),
            "statement_count": count(line.get("statement_count") or 0),
            "statement_amount": _money(line.get("statement_amount_minor") or 0, line.get("currency")),
            "matches": bool(line.get("matches")),
        }
        for line in details.get("gateway_vs_statement") or []
    ]
    ledger = details.get("ledger") or {}
    ledger_lines = [
        {
            "status": e.get("status"),
            # each line is one currency (ledger.transactions.currency); a line recorded
            # without one (findings of an older release) stays in minor units
            "currency": e.get("currency") or "",
            "ledger_count": count(e.get("ledger_count") or 0),
            "ledger_amount": _money(e.get("ledger_amount_minor") or 0, e.get("currency") or None),
            "gateway_count": count(e.get("gateway_count") or 0),
            "gateway_amount": _money(e.get("gateway_amount_minor"), e.get("currency") or None),
            "matches": bool(e["matches"]) if "matches" in e else bool(e.get("count_matches")),
        }
        for e in ledger.get("statuses") or []
    ]
    several = len(currencies) > 1 or bool(divergence.get("fx_rates"))
    return {
        "outcome": details.get("outcome"),
        "total": _money(divergence.get("divergent_amount_minor"), rc)
        if divergence.get("divergent_amount_minor") is not None
        else "-",
        "total_count": count(divergence.get("divergent_count") or 0),
        "total_keys": int(divergence.get("divergent_count") or 0),
        "pct": pct(divergence.get("divergence_pct")),
        "reporting_currency": rc,
        "converted": several,
        "rates": rates,
        "unconverted": list(divergence.get("unconverted_currencies") or ()),
        "currencies": currencies,
        "gateway_vs_statement": lines,
        "ledger_status": ledger.get("status"),
        "ledger_detail": ledger.get("detail"),
        "ledger_matches": ledger.get("matches"),
        "ledger": ledger_lines,
        "cycles": details.get("cycles") or {},
    }


__all__ = [
    "FinanceReportView",
    "add_finance_report_routes",
    "check_report",
    "finance_reports",
    "findings_view",
    "render_finance_form",
]
