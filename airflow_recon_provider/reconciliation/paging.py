"""Paging on-call (runbook *Detecção* 1: "Alertas no PagerDuty"): what the alert
``billing_gateway-reconciliation`` says in PagerDuty's Events API v2, and when.

One PagerDuty alert per incident: its dedup key is
``billing_gateway-reconciliation:<psp>:<incident_id>`` (DESIGN 5), so a re-fire of the watch
while the incident is open lands on the same PagerDuty incident. Its life follows the
incident's: *trigger* when the divergence watch fires for the PSP, *acknowledge* when the
remediation starts mitigating, *resolve* when the incident is recovered (or closed).

Severity from the alert's reasons (DESIGN 4; the highest wins when there are several):

============================  ==========  ============================================
reason                        severity    why
============================  ==========  ============================================
``amount``                    ``error``   more than R$ 5.000 diverges: finance's
                                          figures are wrong now
``lag``                       ``warning`` reconciliation is more than 2 cycles late;
                                          no divergence is known yet
``fx_rate_missing``           ``warning`` a currency without an FX rate diverges: its
                                          size in reais is unknown (never assumed small)
============================  ==========  ============================================

A finance report (runbook *Detecção* 2) pages on-call at **low urgency**. The Events API v2
has no urgency field: urgency is the PagerDuty service's, and a service set to follow the
alert's severity (PagerDuty's dynamic notifications, or an event rule) makes ``critical`` and
``error`` high urgency and ``warning`` and ``info`` low. So the report's trigger has severity
``info`` (:func:`finance_report_event`) and the incident's own dedup key: with no open alert it
opens the incident's PagerDuty incident at low urgency, and the remediation's acknowledge and
resolve close it like any other; with an open one PagerDuty adds it to that alert (its custom
details — ticket, window, description — in the alert's log) and nobody is paged twice. When
the watch later fires for an incident whose only open alert is such a lower-severity one, the
watch resolves it and triggers again (:meth:`PagingState.superseded_by`): PagerDuty keeps an
open alert's urgency, and a divergence above R$ 5.000 must not stay a low-urgency page.

Amounts in the custom details are integers of minor units with their currency, next to the
text people read (pt-BR: ``R$ 104.175,21``); the converted total in reais says which rates
it used. Pure: nothing here talks to PagerDuty or imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.i18n import N_, _, ngettext
from airflow_recon_provider.reconciliation.incidents import Figures, check_incident_id, format_window
from airflow_recon_provider.reconciliation.money import format_money, format_pct
from airflow_recon_provider.reconciliation.thresholds import AlertReason

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.incidents import IncidentEvent

#: the alert of the runbook's Contexto, as PagerDuty shows it
ALERT_NAME = "billing_gateway-reconciliation"
#: the incident timeline step of every event sent to PagerDuty (sent or failed); a
#: communication, so finance's updates leave it out of "steps executed"
PAGING_STEP = "communication.pagerduty"
#: PagerDuty's limit on ``payload.summary``
SUMMARY_MAX = 1024
#: Events API v2 severities, lowest first
SEVERITIES = ("info", "warning", "error", "critical")

#: a finance report's trigger: low urgency on a service whose urgency follows severity
FINANCE_REPORT_SEVERITY = "info"
#: the reason a finance report's trigger gives (custom details, timeline)
FINANCE_REPORT_REASON = "finance_report"
#: how much of finance's description goes to PagerDuty (the whole one is on the incident)
DESCRIPTION_IN_PAGE = 500

#: the mapping of the module docstring
SEVERITY_BY_REASON: Mapping[str, str] = {
    AlertReason.AMOUNT.value: "error",
    AlertReason.LAG.value: "warning",
    AlertReason.FX_RATE_MISSING.value: "warning",
}


class PagingError(ReconError):
    """An alert that cannot be turned into a PagerDuty event (bad reason, id, action)."""


class PagingAction(StrEnum):
    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


def parse_action(value: Any) -> PagingAction:
    text = "" if value is None else str(value).strip().lower()
    try:
        return PagingAction(text)
    except ValueError:
        raise PagingError(
            f"PagerDuty event action must be one of {', '.join(a.value for a in PagingAction)}, got {value!r}"
        ) from None


def dedup_key(psp: str, incident_id: str) -> str:
    """``billing_gateway-reconciliation:<psp>:<incident_id>``: one PagerDuty alert per incident."""
    return f"{ALERT_NAME}:{check_psp_name(psp)}:{check_incident_id(incident_id)}"


def reasons_of(alert: Mapping[str, Any]) -> list[str]:
    """The alert's reasons (``reasons`` list, else the comma-separated ``reason``)."""
    reasons = alert.get("reasons")
    if not reasons:
        reasons = [r for r in str(alert.get("reason") or "").split(",") if r.strip()]
    return sorted({str(r).strip() for r in reasons})


def severity_for(reasons: Iterable[str]) -> str:
    """PagerDuty severity of an alert with these reasons: the highest of each reason's."""
    found = sorted({str(r).strip() for r in reasons if str(r).strip()})
    if not found:
        raise PagingError("the alert has no reason: expected some of amount, lag, fx_rate_missing")
    unknown = [r for r in found if r not in SEVERITY_BY_REASON]
    if unknown:
        raise PagingError(
            f"unknown alert reason(s) {', '.join(unknown)}: expected amount, lag or fx_rate_missing"
        )
    return max((SEVERITY_BY_REASON[r] for r in found), key=SEVERITIES.index)


def run_grid_url(api_base_url: str, dag_id: str, run_id: str) -> str:
    """The Airflow UI page of a DAG run (its grid): ``<base>/dags/<dag_id>/runs/<run_id>``."""
    base = str(api_base_url).rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _money(amount_minor: int | None, currency: str | None, *, locale: str | None) -> dict[str, Any]:
    return {
        "amount_minor": amount_minor,
        "currency": currency,
        "text": format_money(amount_minor, currency, locale=locale) if currency else "-",
    }


#: an alert reason (``AlertReason``) as on-call reads it in PagerDuty
REASON_NAMES: Mapping[str, str] = {
    "amount": N_("amount above the threshold"),
    "lag": N_("reconciliation behind"),
    "fx_rate_missing": N_("FX rate missing"),
    "finance_report": N_("finance's report"),
}


def reason_words(reasons: Iterable[str]) -> str:
    """``valor acima do limite, reconciliação atrasada`` in the language in force; an unknown
    reason as it is."""
    return ", ".join(_(REASON_NAMES[r]) if r in REASON_NAMES else r for r in reasons)


def lag_text(lag_cycles: int | None) -> str:
    """``3 ciclos de atraso`` / ``nunca reconciliado`` in the language in force."""
    if lag_cycles is None:
        return _("never reconciled")
    return ngettext("%(num)s cycle behind", "%(num)s cycles behind", int(lag_cycles))


def divergence_details(figures: Figures, *, locale: str | None = None) -> dict[str, Any]:
    """The divergence per currency (each in its own minor units) and the total converted to
    the reporting currency with the rates used; every amount an integer with its currency
    and the text people read."""
    per_currency = {}
    for code in sorted(figures.by_currency):
        fig = figures.by_currency[code]
        per_currency[code] = {
            **_money(fig.divergent_amount_minor, code, locale=locale),
            "count": fig.divergent_count,
            "gateway": _money(fig.gateway_amount_minor, code, locale=locale)
            if fig.gateway_amount_minor is not None
            else None,
            "converted": code != figures.reporting_currency and code not in figures.unconverted_currencies,
        }
    total = {
        **_money(figures.divergent_amount_minor, figures.reporting_currency, locale=locale),
        "count": figures.divergent_count,
        "pct": figures.divergence_pct,
        "pct_text": format_pct(figures.divergence_pct, locale=locale),
        "converted": figures.converted,
    }
    details: dict[str, Any] = {
        "total_in_reporting_currency": total,
        "by_currency": per_currency,
        "fx_rates": figures.rate_lines(),
    }
    if figures.unconverted_currencies:
        details["unconverted_currencies"] = list(figures.unconverted_currencies)
        details["not_converted"] = figures.unconverted_text()
    return details


@dataclass(frozen=True)
class PagingEvent:
    """One event for the Events API v2, in the terms of the pagerduty provider's
    ``prepare_event_data`` (:meth:`event_data_kwargs`)."""

    action: PagingAction
    dedup_key: str
    summary: str
    severity: str
    source: str
    component: str | None = None
    group: str | None = None
    class_type: str | None = None
    custom_details: Mapping[str, Any] | None = None
    links: tuple[Mapping[str, str], ...] = ()
    incident_id: str = ""
    psp: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise PagingError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        if not self.summary.strip():
            raise PagingError("the PagerDuty summary is empty")
        if len(self.summary) > SUMMARY_MAX:
            object.__setattr__(self, "summary", self.summary[: SUMMARY_MAX - 1] + "…")

    def event_data_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``prepare_event_data`` (pagerduty provider)."""
        return {
            "summary": self.summary,
            "severity": self.severity,
            "source": self.source,
            "custom_details": dict(self.custom_details) if self.custom_details is not None else None,
            "component": self.component,
            "group": self.group,
            "class_type": self.class_type,
            "action": self.action.value,
            "dedup_key": self.dedup_key,
            "links": [dict(link) for link in self.links] or None,
        }

    def record(self) -> dict[str, Any]:
        """What the incident timeline keeps of the event (never the routing key)."""
        return {
            "event_action": self.action.value,
            "dedup_key": self.dedup_key,
            "severity": self.severity,
            "summary": self.summary,
            "links": [dict(link) for link in self.links],
            **dict(self.extras),
        }


def _links(dashboard_url: str | None, run_url: str | None) -> tuple[dict[str, str], ...]:
    links = []
    if dashboard_url:
        links.append(
            {"href": dashboard_url, "text": _("%(title)s (dashboard)", title="Reconciliação Financeira")}
        )
    if run_url:
        links.append({"href": run_url, "text": _("Remediation run (Airflow grid)")})
    return tuple(links)


def trigger_event(
    alert: Mapping[str, Any],
    *,
    incident_id: str,
    source: str,
    dashboard_url: str | None = None,
    run_url: str | None = None,
    locale: str | None = None,
) -> PagingEvent:
    """The *trigger* of the alert of ``incident_id`` from the watch's alert payload
    (:meth:`~airflow_recon_provider.reconciliation.detection.Detection.event_payload`).

    :param alert: the alert payload (psp, window, reasons, figures per currency, lag).
    :param incident_id: the PSP's open incident the alert belongs to.
    :param source: who detected it (``payload.source``).
    :param dashboard_url: the dashboard (``/recon/``), a link of the alert.
    :param run_url: the remediation run's grid, a link of the alert.
    :param locale: how amounts are written for people (default: the language in force, in
        which the summary and the details' texts are written too).
    """
    from datetime import datetime

    from airflow_recon_provider.reconciliation.window import Window

    psp = str(alert.get("psp") or "")
    key = dedup_key(psp, incident_id)
    reasons = reasons_of(alert)
    severity = severity_for(reasons)
    try:
        window = Window(
            datetime.fromisoformat(str(alert["window_start"])),
            datetime.fromisoformat(str(alert["window_end"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PagingError(f"the alert of {psp} has no readable window ({exc})") from None
    figures = Figures.coerce(alert)
    if figures is None:  # pragma: no cover - coerce only returns None for None
        raise PagingError(f"the alert of {psp} has no divergence figures")
    lag = alert.get("lag_cycles")
    summary = _(
        "%(alert)s: %(psp)s — %(figures)s divergent in %(transactions)s, lag: %(lag)s (%(reasons)s) — "
        "%(incident)s",
        alert=ALERT_NAME,
        psp=psp,
        figures=figures.short(),
        transactions=ngettext("%(num)s transaction", "%(num)s transactions", figures.divergent_count),
        lag=lag_text(lag),
        reasons=reason_words(reasons),
        incident=incident_id,
    )
    details = {
        "alert": ALERT_NAME,
        "psp": psp,
        "incident_id": incident_id,
        "reasons": reasons,
        "reasons_text": reason_words(reasons),
        "divergence": divergence_details(figures, locale=locale),
        "lag": {"cycles": lag, "text": lag_text(lag)},
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "text": format_window(window),
        },
    }
    if alert.get("checked_at"):
        details["checked_at"] = str(alert["checked_at"])
    return PagingEvent(
        action=PagingAction.TRIGGER,
        dedup_key=key,
        summary=summary,
        severity=severity,
        source=source,
        component=psp,
        group="billing-gateway",
        class_type="reconciliation",
        custom_details=details,
        links=_links(dashboard_url, run_url),
        incident_id=incident_id,
        psp=psp,
        extras={"reasons": reasons},
    )


def finance_report_event(
    report: Mapping[str, Any],
    *,
    source: str,
    dashboard_url: str | None = None,
    run_url: str | None = None,
) -> PagingEvent:
    """The *trigger* that tells on-call about finance's report (severity ``info``: low
    urgency, see the module docstring), with the incident's dedup key.

    :param report: the finance report's record (``RecordFinanceReportOperator``'s result:
        psp, window, finance_ticket, description, incident_id, incident_action, reported_by,
        dry_run).
    :param source: who sends it (``payload.source``).
    :param dashboard_url: the incident's page on the dashboard, a link of the alert.
    :param run_url: the dry run's grid, a link of the alert.
    """
    from datetime import datetime

    from airflow_recon_provider.reconciliation.window import Window

    psp = str(report.get("psp") or "")
    incident_id = str(report.get("incident_id") or "")
    key = dedup_key(psp, incident_id)
    ticket = str(report.get("finance_ticket") or "").strip()
    if not ticket:
        raise PagingError(f"the finance report on {incident_id} has no ticket")
    try:
        window = Window(
            datetime.fromisoformat(str(report["window_start"])),
            datetime.fromisoformat(str(report["window_end"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PagingError(f"the finance report {ticket} has no readable window ({exc})") from None
    description = str(report.get("description") or "")
    if len(description) > DESCRIPTION_IN_PAGE:
        description = description[: DESCRIPTION_IN_PAGE - 1] + "…"
    dry_run = report.get("dry_run") if isinstance(report.get("dry_run"), Mapping) else {}
    summary = _(
        "%(alert)s: %(psp)s — finance report %(ticket)s: ledger vs. the PSP's statement in %(window)s "
        "(dry-run investigation started) — %(incident)s",
        alert=ALERT_NAME,
        psp=psp,
        ticket=ticket,
        window=format_window(window),
        incident=incident_id,
    )
    details = {
        "alert": ALERT_NAME,
        "psp": psp,
        "incident_id": incident_id,
        "reasons": [FINANCE_REPORT_REASON],
        "urgency": _("low: severity info (the service's urgency follows the alert's severity)"),
        "finance_ticket": ticket,
        "description": description,
        "reported_by": str(report.get("reported_by") or ""),
        "incident_action": str(report.get("incident_action") or ""),
        "dry_run": str(dry_run.get("run_id") or ""),
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "text": format_window(window),
        },
    }
    links = []
    if dashboard_url:
        links.append(
            {
                "href": dashboard_url,
                "text": _(
                    "%(incident)s — report %(ticket)s and findings (dashboard)",
                    incident=incident_id,
                    ticket=ticket,
                ),
            }
        )
    if run_url:
        links.append({"href": run_url, "text": _("Dry run (Airflow grid)")})
    return PagingEvent(
        action=PagingAction.TRIGGER,
        dedup_key=key,
        summary=summary,
        severity=FINANCE_REPORT_SEVERITY,
        source=source,
        component=psp,
        group="billing-gateway",
        class_type="finance_report",
        custom_details=details,
        links=tuple(links),
        incident_id=incident_id,
        psp=psp,
        extras={"reasons": [FINANCE_REPORT_REASON], "finance_ticket": ticket},
    )


def follow_up_event(
    action: PagingAction | str,
    *,
    psp: str,
    incident_id: str,
    source: str,
    note: str,
) -> PagingEvent:
    """The *acknowledge* or *resolve* of the incident's alert. The Events API reads only the
    dedup key of these (the hook sends no payload, as the ``pagerduty`` client does); the
    summary is what the timeline says."""
    action = parse_action(action)
    if action is PagingAction.TRIGGER:
        raise PagingError("a trigger is built from the watch's alert (trigger_event), not as a follow-up")
    key = dedup_key(psp, incident_id)
    return PagingEvent(
        action=action,
        dedup_key=key,
        summary=(
            _(
                "%(alert)s: %(psp)s — %(incident)s acknowledged: %(note)s",
                alert=ALERT_NAME,
                psp=psp,
                incident=incident_id,
                note=note,
            )
            if action is PagingAction.ACKNOWLEDGE
            else _(
                "%(alert)s: %(psp)s — %(incident)s resolved: %(note)s",
                alert=ALERT_NAME,
                psp=psp,
                incident=incident_id,
                note=note,
            )
        ),
        severity="info",
        source=source,
        incident_id=incident_id,
        psp=psp,
    )


@dataclass(frozen=True)
class PagingState:
    """What the incident's timeline says was delivered to PagerDuty.

    :param triggered: a trigger was delivered (PagerDuty has the alert).
    :param delivered_since_trigger: the actions delivered after the latest delivered trigger.
    """

    triggered: bool
    delivered_since_trigger: frozenset[PagingAction] = frozenset()
    #: the severity of the trigger that opened the alert (PagerDuty keeps it, and its
    #: urgency, for the triggers deduplicated into the alert)
    severity: str | None = None

    @property
    def open(self) -> bool:
        """PagerDuty has the incident's alert open (triggered or acknowledged)."""
        return self.triggered and PagingAction.RESOLVE not in self.delivered_since_trigger

    def superseded_by(self, severity: str) -> bool:
        """A trigger of ``severity`` must first resolve the open alert: it is of a lower
        severity (a finance report's ``info``), and PagerDuty keeps an open alert's urgency."""
        return (
            self.open
            and self.severity in SEVERITIES
            and SEVERITIES.index(severity) > SEVERITIES.index(str(self.severity))
        )

    def needs(self, action: PagingAction) -> str | None:
        """``None`` when ``action`` should be sent now, else why not."""
        if action is PagingAction.TRIGGER:
            return None  # a re-fire triggers again with the same key: PagerDuty deduplicates
        if not self.triggered:
            return "no PagerDuty alert was triggered for this incident"
        if PagingAction.RESOLVE in self.delivered_since_trigger:
            return "the PagerDuty alert is already resolved"
        if action is PagingAction.ACKNOWLEDGE and PagingAction.ACKNOWLEDGE in self.delivered_since_trigger:
            return "the PagerDuty alert is already acknowledged"
        return None


def paging_state(events: Iterable[IncidentEvent]) -> PagingState:
    """The :class:`PagingState` of a timeline (events in the order they happened)."""
    triggered = False
    since: set[PagingAction] = set()
    severity: str | None = None
    for event in events:
        if event.step != PAGING_STEP or (event.details or {}).get("status") != "sent":
            continue
        try:
            action = PagingAction(str(event.details.get("event_action")))
        except ValueError:
            continue
        if action is PagingAction.TRIGGER:
            # a trigger to an open alert is added to it (deduplicated): the alert keeps the
            # severity, and so the urgency, of the trigger that opened it
            if not (triggered and PagingAction.RESOLVE not in since):
                severity = str(event.details.get("severity") or "") or None
            triggered, since = True, set()
        else:
            since.add(action)
    return PagingState(triggered, frozenset(since), severity)


__all__ = [
    "ALERT_NAME",
    "FINANCE_REPORT_REASON",
    "FINANCE_REPORT_SEVERITY",
    "PAGING_STEP",
    "SEVERITIES",
    "SEVERITY_BY_REASON",
    "SUMMARY_MAX",
    "PagingAction",
    "PagingError",
    "PagingEvent",
    "PagingState",
    "dedup_key",
    "divergence_details",
    "finance_report_event",
    "follow_up_event",
    "lag_text",
    "paging_state",
    "parse_action",
    "reasons_of",
    "run_grid_url",
    "severity_for",
    "trigger_event",
]
