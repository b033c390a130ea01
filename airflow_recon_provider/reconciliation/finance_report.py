"""Finance's report of a difference between the ledger and a PSP's statement (pure, no Airflow).

Runbook *Billing Gateway — Falhas de Reconciliação*, Detecção 2: "Chamados do financeiro
relatando diferenças entre ledger interno e extratos PSP". Finance says which PSP, which
period, its own ticket (``FIN-88``) and what it saw; this module decides:

- whether the report is valid (:func:`parse_finance_report`): every field checked before
  anything is read or written, each problem named in the language in force (pt-BR by
  default; finance reads it in the dashboard's form as well as in the task log). The PSP and
  the window go through the same helpers as the remediation's request
  (:func:`check_psp_name`, :func:`parse_timestamp`, :meth:`Window.parse` with the configured
  maximum);
- the names it leaves on the incident timeline (:class:`FinanceReportStep`) and the id of the
  dry-run investigation it starts (:func:`dry_run_run_id`: one per report run, so a retry
  never starts a second one);
- what on-call reads in Slack (:func:`slack_text`) and what the dry run found, side by side:
  gateway and statement per status and currency, the ledger per status
  (:func:`side_by_side`; amounts are only ever added within one currency, DESIGN 3a).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import FINANCE_REPORT_DAG_ID, REMEDIATION_DAG_ID
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import ReconError, WindowError
from airflow_recon_provider.reconciliation.i18n import _, babel_locale, current_language, ngettext
from airflow_recon_provider.reconciliation.inputs import blank
from airflow_recon_provider.reconciliation.window import DEFAULT_MAX_WINDOW, Window, parse_timestamp

if TYPE_CHECKING:
    from psycopg import sql

    from airflow_recon_provider.reconciliation.mapping import TableMapping

#: the DAG finance triggers, and the investigation it starts
#: finance's own ticket: ``FIN-<number>``
FINANCE_TICKET_PATTERN = r"^FIN-[1-9][0-9]{0,8}$"
FINANCE_TICKET_EXAMPLE = "FIN-88"
DESCRIPTION_MAX = 2000
#: what a description may not hold: control characters other than tab and line breaks (a NUL
#: cannot even be stored in PostgreSQL text)
DESCRIPTION_PATTERN = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]*$"
_TICKET_RE = re.compile(FINANCE_TICKET_PATTERN)
_DESCRIPTION_RE = re.compile(DESCRIPTION_PATTERN)
#: the form's fields, in the order their problems are reported
FIELDS = ("psp", "window_start", "window_end", "finance_ticket", "description")
LOCAL_TIMEZONE = "America/Sao_Paulo"


class FinanceReportStep:
    """What a finance report leaves on the incident timeline."""

    #: the report itself (details: ``finance_ticket``, ``description``, ``reported_by``,
    #: ``reported_at``, the window and the dry run started)
    REPORTED = "detection.finance_report"
    #: on-call told in the incidents channel
    SLACK = "communication.finance_report_slack"
    #: what the dry-run investigation found (recorded by the dry run itself)
    FINDINGS = "investigation.finance_findings"


class FinanceReportError(ReconError):
    """A finance report is invalid; nothing was read or written.

    :param problems: field -> what is wrong with it (in the language in force), in the form's
        order.
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = {f: problems[f] for f in (*FIELDS, *problems) if f in problems}
        super().__init__(
            _("invalid finance report: %(problems)s", problems="; ".join(self.problems.values()))
        )


def _span_text(span: timedelta) -> str:
    """``3 dias``, ``30 horas``, ``1,50 hora`` in the language in force."""
    from babel.numbers import format_decimal

    hours = span.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return ngettext("%(num)s day", "%(num)s days", int(hours // 24))
    if hours == int(hours):
        return ngettext("%(num)s hour", "%(num)s hours", int(hours))
    return _("%(num)s hours", num=format_decimal(round(hours, 2), format="#,##0.00", locale=babel_locale()))


@dataclass(frozen=True)
class FinanceReport:
    """One report of finance: PSP, window, finance ticket, what finance saw.

    :param psp: the PSP whose statement disagrees with the ledger.
    :param window: the period ``[start, end)``, UTC.
    :param finance_ticket: finance's ticket (``FIN-<n>``).
    :param description: finance's words, as typed (escaped wherever it is shown).
    """

    psp: str
    window: Window
    finance_ticket: str
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            **self.window.as_dict(),
            "finance_ticket": self.finance_ticket,
            "description": self.description,
        }

    @property
    def reason(self) -> str:
        """The reason of an incident this report opens."""
        return f"finance report {self.finance_ticket}"


def parse_finance_report(
    *,
    psp: Any,
    window_start: Any,
    window_end: Any,
    finance_ticket: Any,
    description: Any,
    known_psps: Iterable[str] | None = None,
    max_window: timedelta | None = DEFAULT_MAX_WINDOW,
) -> FinanceReport:
    """Check every field and return the report, or raise :class:`FinanceReportError` naming
    every problem (in the language in force).

    :param known_psps: the configured PSP list (``None``: no list configured; whether the PSP
        exists is then checked against the database by the caller).
    :param max_window: the longest window (the configuration's ``max_window``).
    """
    problems: dict[str, str] = {}
    name = "" if blank(psp) else str(psp).strip()
    if not name:
        problems["psp"] = _("Give the PSP whose statement differs from the ledger.")
    else:
        try:
            check_psp_name(name)
        except ReconError:
            problems["psp"] = _(
                "PSP %(psp)s is invalid: a PSP name has lower-case letters, digits and '_' (e.g. stripe).",
                psp=repr(name),
            )
        else:
            known = list(known_psps) if known_psps is not None else None
            if known is not None and name not in known:
                problems["psp"] = _(
                    "PSP %(psp)s is unknown; configured PSPs: %(known)s.",
                    psp=repr(name),
                    known=", ".join(known),
                )

    moments: dict[str, datetime] = {}
    for key, missing, malformed in (
        (
            "window_start",
            _("Give the window start, in UTC, for example %(example)s.", example="2026-11-20T10:00Z"),
            _(
                "The window start %(value)s is not an ISO 8601 date and time with a time zone (e.g. "
                "%(example)s).",
                value=repr(str(window_start)),
                example="2026-11-20T10:00Z",
            ),
        ),
        (
            "window_end",
            _(
                "Give the window end (exclusive), in UTC, for example %(example)s.",
                example="2026-11-20T14:00Z",
            ),
            _(
                "The window end (exclusive) %(value)s is not an ISO 8601 date and time with a time zone "
                "(e.g. %(example)s).",
                value=repr(str(window_end)),
                example="2026-11-20T14:00Z",
            ),
        ),
    ):
        value = window_start if key == "window_start" else window_end
        if blank(value):
            problems[key] = missing
            continue
        try:
            moments[key] = parse_timestamp(value, name=key)
        except WindowError:
            problems[key] = malformed
    window = None
    if len(moments) == 2:
        try:
            window = Window.parse(moments["window_start"], moments["window_end"], max_span=max_window)
        except WindowError:
            start, end = moments["window_start"], moments["window_end"]
            if end <= start:
                problems["window_end"] = _(
                    "The window end (%(end)s) must be after the start (%(start)s).",
                    end=_utc(end),
                    start=_utc(start),
                )
            else:
                problems["window_end"] = _(
                    "The window of %(span)s is longer than the maximum of %(max)s; split the period into "
                    "smaller reports.",
                    span=_span_text(end - start),
                    max=_span_text(max_window or DEFAULT_MAX_WINDOW),
                )

    ticket = "" if blank(finance_ticket) else str(finance_ticket).strip()
    if not ticket:
        problems["finance_ticket"] = _(
            "Give finance's ticket, for example %(example)s.", example=FINANCE_TICKET_EXAMPLE
        )
    elif not _TICKET_RE.fullmatch(ticket):
        shown = ticket if len(ticket) <= 40 else ticket[:40] + "…"
        problems["finance_ticket"] = _(
            "Finance ticket %(ticket)s is invalid: the format is FIN-<number>, for example %(example)s.",
            ticket=repr(shown),
            example=FINANCE_TICKET_EXAMPLE,
        )

    text = "" if description is None else str(description).strip()
    if not text:
        problems["description"] = _("Describe the difference finance found.")
    elif len(text) > DESCRIPTION_MAX:
        problems["description"] = _(
            "The description has %(length)s characters; the maximum is %(max)s.",
            length=len(text),
            max=DESCRIPTION_MAX,
        )
    elif not _DESCRIPTION_RE.fullmatch(text):
        problems["description"] = _(
            "The description holds control characters (other than line breaks and tabs); paste the "
            "text without them."
        )

    if problems or window is None:
        raise FinanceReportError(problems or {"window_end": _("Invalid window.")})
    return FinanceReport(psp=name, window=window, finance_ticket=ticket, description=text)


def _utc(moment: datetime) -> str:
    """``20/11/2026 10:00 UTC`` (pt-BR), ``2026-11-20 10:00 UTC`` (en)."""
    pattern = "%d/%m/%Y %H:%M UTC" if current_language() == "pt_BR" else "%Y-%m-%d %H:%M UTC"
    return moment.astimezone(UTC).strftime(pattern)


def dry_run_run_id(finance_ticket: str, report_run_id: str) -> str:
    """The run id of the dry-run investigation a report run starts: derived from the report's
    run, so a retry finds it and never starts a second one (Airflow run ids: at most 250
    characters of ``[A-Za-z0-9_.~:+-]``)."""
    safe = re.sub(r"[^A-Za-z0-9_.~:+-]", "_", report_run_id)
    return f"finance_report__{finance_ticket}__{safe}"[:250]


def dry_run_conf(report: FinanceReport, incident_id: str) -> dict[str, Any]:
    """The conf of the dry run: the remediation's form with the report's PSP, window and
    incident; a dry run (investigation and the correction's CSV, nothing changed)."""
    return {**report.window.as_dict(), "psp": report.psp, "incident_id": incident_id, "dry_run": True}


# -- Slack --------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    # the only three characters Slack's mrkdwn requires escaped
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(
    report: FinanceReport,
    *,
    incident_id: str,
    opened: bool,
    reported_by: str,
    dry_run_id: str,
    incident_link: str | None = None,
) -> str:
    """What on-call reads in the incidents channel (Slack mrkdwn, every free text escaped), in
    the language in force."""
    start, end = report.window.start, report.window.end
    head = ":rotating_light: " + _(
        "*Finance report %(ticket)s* — PSP %(psp)s: difference between the ledger and the PSP's statement",
        ticket=_slack_escape(report.finance_ticket),
        psp=f"`{_slack_escape(report.psp)}`",
    )
    incident = (
        _("Incident *%(incident)s* opened", incident=incident_id)
        if opened
        else _("Incident *%(incident)s* already open; the report was attached", incident=incident_id)
    )
    if incident_link:
        see = _("see it on the dashboard")
        incident += f" — <{incident_link}|{see}>"
    description = _slack_escape(report.description)
    if len(description) > 1500:
        description = description[:1500] + "…"
    lines = [
        head,
        incident,
        _("Window: %(start)s to %(end)s", start=_utc(start), end=_utc(end)),
        _("Reported by: %(who)s", who=_slack_escape(reported_by)),
        _("Description: %(text)s", text=description),
        _("Dry-run investigation started: %(run)s", run=f"`{_slack_escape(dry_run_id)}`"),
    ]
    return "\n".join(lines)


# -- the findings, side by side -------------------------------------------------------------------


def sides_query(m: TableMapping) -> sql.Composed:
    """Gateway rows and statement lines of a PSP in ``[start, end)``, by status and currency:
    ``side, status, currency, count, amount_minor`` (each amount within its own currency)."""
    from psycopg import sql

    from airflow_recon_provider.reconciliation.mapping import sql_names

    return sql.SQL(
        """SELECT 'gateway', t.{t_status}, upper(t.{t_currency}), count(*)::bigint,
       COALESCE(sum(t.{t_amount}), 0)::bigint
FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(start)s AND t.{t_created} < %(end)s
GROUP BY 2, 3
UNION ALL
SELECT 'statement', s.{s_status}, upper(s.{s_currency}), count(*)::bigint,
       COALESCE(sum(s.{s_amount}), 0)::bigint
FROM {statements} AS s
WHERE s.{s_psp} = %(psp)s AND s.{s_occurred} >= %(start)s AND s.{s_occurred} < %(end)s
GROUP BY 2, 3
ORDER BY 1, 2, 3"""
    ).format(**sql_names(m))


def side_by_side(
    rows: Iterable[tuple[str, str, str, int, int]],
    *,
    status_mapping: Mapping[str, str] | None = None,
    ledger_statuses: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Gateway vs statement per (status, currency) — the statement's statuses mapped to the
    gateway's vocabulary — and the ledger beside the gateway per (status, currency): amounts
    only ever next to the same currency's (DESIGN 3a).

    :param rows: :func:`sides_query`'s rows.
    :param status_mapping: the PSP's statement -> gateway status mapping.
    :param ledger_statuses: the dry run's ledger lines (``PaymentsLedgerHook.compare_with_gateway``:
        ``status`` in the gateway's vocabulary, ``currency``, ``ledger_count``,
        ``ledger_amount_minor``); a line recorded without ``currency`` keeps none.
    """
    mapping = dict(status_mapping or {})
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for side, status, currency, count, amount in rows:
        status = str(status)
        if side == "statement":
            status = mapping.get(status, status)
        key = (status, str(currency or ""))
        line = lines.setdefault(
            key,
            {
                "status": key[0],
                "currency": key[1],
                "gateway_count": 0,
                "gateway_amount_minor": 0,
                "statement_count": 0,
                "statement_amount_minor": 0,
            },
        )
        line[f"{side}_count"] += int(count)
        line[f"{side}_amount_minor"] += int(amount)  # same status and currency: one currency
    for line in lines.values():
        line["matches"] = (line["gateway_count"], line["gateway_amount_minor"]) == (
            line["statement_count"],
            line["statement_amount_minor"],
        )
    ledger = []
    for entry in ledger_statuses:
        status, currency = str(entry.get("status")), str(entry.get("currency") or "")
        gateway = lines.get((status, currency), {})
        figures = {
            "ledger_count": int(entry.get("ledger_count") or 0),
            "ledger_amount_minor": int(entry.get("ledger_amount_minor") or 0),
            "gateway_count": int(gateway.get("gateway_count", 0)),
            "gateway_amount_minor": int(gateway.get("gateway_amount_minor", 0)),
        }
        ledger.append(
            {
                "status": status,
                "currency": currency,
                **figures,
                "count_matches": figures["ledger_count"] == figures["gateway_count"],
                "matches": (figures["ledger_count"], figures["ledger_amount_minor"])
                == (figures["gateway_count"], figures["gateway_amount_minor"]),
            }
        )
    return {
        "gateway_vs_statement": [lines[k] for k in sorted(lines)],
        "ledger": sorted(ledger, key=lambda e: (e["status"], e["currency"])),
    }


__all__ = [
    "DESCRIPTION_MAX",
    "DESCRIPTION_PATTERN",
    "FIELDS",
    "FINANCE_REPORT_DAG_ID",
    "FINANCE_TICKET_EXAMPLE",
    "FINANCE_TICKET_PATTERN",
    "LOCAL_TIMEZONE",
    "REMEDIATION_DAG_ID",
    "FinanceReport",
    "FinanceReportError",
    "FinanceReportStep",
    "dry_run_conf",
    "dry_run_run_id",
    "parse_finance_report",
    "side_by_side",
    "sides_query",
    "slack_text",
]
