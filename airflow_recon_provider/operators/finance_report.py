"""Operators of Detecção 2 — finance's reports (``billing_gateway_finance_report``).

Runbook, Detecção: "Chamados do financeiro relatando diferenças entre ledger interno e
extratos PSP".

- :class:`RecordFinanceReportOperator` — checks the report (every field, each problem named
  in ``[recon] language``, pt-BR by default, nothing written before), puts it on the PSP's
  incident — opening one (reason ``finance report FIN-88``) when none is open, attaching to
  the open one otherwise — with the finance ticket on the timeline, and hands the dry run's
  id and conf to the trigger task.
- :class:`NotifyFinanceReportOperator` — tells on-call in the incidents channel (connection
  ``slack_incidents``, through :class:`~airflow_recon_provider.notifications.finance.FinanceNotifier`)
  and records it on the timeline; a retry of a delivered message does not post again.
- :func:`record_findings` — run by the dry run's ``snapshot`` step (see
  :class:`RecordFinanceFindings`): what the
  investigation found, on the incident for the dashboard.

Hooks are imported inside ``execute`` so DAG files parse fast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_recon_provider.i18n import _, language_scope, ngettext
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, INCIDENTS_CHANNEL, SLACK_CONN_ID
from airflow_recon_provider.operators._context import blank, run_actor, run_id_of

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.finance_report import FinanceReport
    from airflow_recon_provider.reconciliation.incidents import IncidentEvent

#: XCom keys of the record step, read by the trigger task
DRY_RUN_CONF_KEY = "dry_run_conf"
DRY_RUN_ID_KEY = "dry_run_run_id"


def _report_event(events: Sequence[IncidentEvent], *, run_id: str | None) -> IncidentEvent | None:
    from airflow_recon_provider.reconciliation.finance_report import FinanceReportStep

    return next(
        (e for e in reversed(events) if e.step == FinanceReportStep.REPORTED and e.run_id == run_id),
        None,
    )


class RecordFinanceReportOperator(BaseOperator):
    """Put finance's report on the PSP's incident (runbook, Detecção 2).

    Every field is checked before anything is read or written
    (:class:`~airflow_recon_provider.reconciliation.finance_report.FinanceReportError` names
    each problem: unknown PSP, missing or malformed window, end not after start, window over
    the configured maximum, malformed ticket, empty, long or control-character description).
    Then the incident: the PSP's open one (the report is attached; no second incident), else
    a new one with reason ``finance report <ticket>``. The report is a timeline event with
    ``finance_ticket``, ``description``, ``reported_by``, ``reported_at`` and the dry run it
    starts. A retry of the same run finds its event and records nothing twice.

    Returns (XCom)::

        {"psp", "window_start", "window_end", "finance_ticket", "description",
         "incident_id", "incident_action" (opened | attached), "reported_by", "reported_at",
         "report_event_id", "dry_run": {"dag_id", "run_id", "conf"}}

    and pushes ``dry_run_conf`` / ``dry_run_run_id`` for the trigger task.

    :param psp: the PSP (templated).
    :param window_start: start of the period, ISO 8601 with offset (templated).
    :param window_end: end of the period, exclusive (templated).
    :param finance_ticket: finance's ticket, ``FIN-<n>`` (templated).
    :param description: what finance saw (templated; kept as typed, escaped wherever shown).
    :param billing_gateway_conn_id: the gateway database (``recon`` schema; the primary).
    """

    template_fields: Sequence[str] = ("psp", "window_start", "window_end", "finance_ticket", "description")
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        psp: str,
        window_start: str | datetime | None,
        window_end: str | datetime | None,
        finance_ticket: str | None,
        description: str | None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.finance_ticket = finance_ticket
        self.description = description
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        with language_scope():  # the refusals and the timeline's text people read
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.reconciliation.config import ReconConfig
        from airflow_recon_provider.reconciliation.errors import UnknownPspError
        from airflow_recon_provider.reconciliation.finance_report import (
            REMEDIATION_DAG_ID,
            FinanceReportError,
            dry_run_conf,
            dry_run_run_id,
            parse_finance_report,
        )

        config = ReconConfig.load()
        report = parse_finance_report(
            psp=self.psp,
            window_start=self.window_start,
            window_end=self.window_end,
            finance_ticket=self.finance_ticket,
            description=self.description,
            known_psps=config.psp_names if config.psps else None,
            max_window=config.max_window,
        )
        incidents = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config)
        try:
            incidents.gateway.resolve_psp(report.psp)
        except UnknownPspError as exc:
            raise FinanceReportError(
                {"psp": _("PSP %(psp)s is unknown: %(reason)s", psp=repr(report.psp), reason=exc)}
            ) from None
        actor = run_actor(context)
        run_id = run_id_of(context) or "manual"
        dry_id = dry_run_run_id(report.finance_ticket, run_id)

        incident_id, action, event = self._incident(incidents, report, actor=actor, run_id=run_id)
        if event is None:
            reported_at = datetime.now(UTC)
            details = {
                **report.as_dict(),
                "reported_by": actor,
                "reported_at": reported_at.isoformat(),
                "incident_action": action,
                "dry_run": {"dag_id": REMEDIATION_DAG_ID, "run_id": dry_id},
            }
            event_id = incidents.record_event(
                incident_id,
                step=self._step(),
                outcome=_(
                    "finance report %(ticket)s by %(who)s: difference between the ledger and the "
                    "statement of PSP %(psp)s in %(window)s; dry-run investigation %(run)s started",
                    ticket=report.finance_ticket,
                    who=actor,
                    psp=report.psp,
                    window=report.window,
                    run=dry_id,
                ),
                actor=actor,
                run_id=run_id,
                details=details,
            )
        else:
            self.log.info("This run already recorded the report (event %s): a retry", event.id)
            event_id, reported_at = event.id, event.created_at
            action = str(event.details.get("incident_action") or action)
        conf = dry_run_conf(report, incident_id)
        context["ti"].xcom_push(key=DRY_RUN_CONF_KEY, value=conf)
        context["ti"].xcom_push(key=DRY_RUN_ID_KEY, value=dry_id)
        self.log.info(
            "Finance report %s for PSP %s over %s: %s %s; dry run %s",
            report.finance_ticket,
            report.psp,
            report.window,
            action,
            incident_id,
            dry_id,
        )
        return {
            **report.as_dict(),
            "incident_id": incident_id,
            "incident_action": action,
            "reported_by": actor,
            "reported_at": reported_at.isoformat(),
            "report_event_id": event_id,
            "dry_run": {"dag_id": REMEDIATION_DAG_ID, "run_id": dry_id, "conf": conf},
        }

    @staticmethod
    def _step() -> str:
        from airflow_recon_provider.reconciliation.finance_report import FinanceReportStep

        return FinanceReportStep.REPORTED

    def _incident(
        self, incidents: IncidentHook, report: FinanceReport, *, actor: str, run_id: str
    ) -> tuple[str, str, IncidentEvent | None]:
        """The PSP's open incident (attached) or a new one (opened); with the event this run
        already recorded on it, if any (a retry)."""
        from airflow_recon_provider.reconciliation.incidents import IncidentAlreadyOpenError

        current = incidents.open_incident_for(report.psp)
        if current is not None:
            event = _report_event(incidents.timeline(current.incident_id), run_id=run_id)
            return current.incident_id, "attached", event
        try:
            incident_id = incidents.open_incident(
                report.psp,
                window=report.window,
                reason=report.reason,
                actor=actor,
                run_id=run_id,
                figures=incidents.gateway.summary(report.psp, report.window),
            )
        except IncidentAlreadyOpenError as exc:
            # opened meanwhile (the divergence watch, another report): the report goes there
            return exc.open_incident_id, "attached", None
        return incident_id, "opened", None


class NotifyFinanceReportOperator(BaseOperator):
    """Tell on-call in the incidents channel about finance's report, and record it on the
    incident timeline (``communication.finance_report_slack``). A run whose message was
    delivered already (a retry) does not post again. A failed delivery is recorded and fails
    the task (retried).

    :param report: the record step's result (templated; its XCom).
    :param slack_conn_id: the Slack connection (type ``slack`` or ``slackwebhook``).
    :param slack_channel: the incidents channel (``slack`` connections only; templated).
    :param billing_gateway_conn_id: the gateway database (``recon`` schema; the primary).
    """

    template_fields: Sequence[str] = ("report", "slack_conn_id", "slack_channel")
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        report: Any,
        slack_conn_id: str = SLACK_CONN_ID,
        slack_channel: str = INCIDENTS_CHANNEL,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.slack_conn_id = slack_conn_id
        self.slack_channel = slack_channel
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        with language_scope():  # what on-call reads in Slack and on the timeline
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.notifications.finance import FinanceNotifier
        from airflow_recon_provider.reconciliation.finance_report import FinanceReportStep

        data = self.report if isinstance(self.report, Mapping) else {}
        if not data.get("incident_id"):
            raise ValueError(f"the finance report's record step returned no incident: {self.report!r}")
        incident_id = str(data["incident_id"])
        run_id = run_id_of(context)
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        delivered = [
            e
            for e in hook.timeline(incident_id)
            if e.step == FinanceReportStep.SLACK and e.run_id == run_id and e.details.get("status") == "sent"
        ]
        if delivered:
            self.log.info("On-call was told by this run already (event %s): not again", delivered[0].id)
            return {"slack": "already sent", "incident_id": incident_id}
        notifier = FinanceNotifier(
            slack_conn_id=None if blank(self.slack_conn_id) else str(self.slack_conn_id),
            slack_channel=self.slack_channel,
            billing_gateway_conn_id=self.billing_gateway_conn_id,
            actor=run_actor(context),
        )
        if not notifier.slack_conn_id:
            raise ValueError("no Slack connection given: on-call cannot be told (slack_conn_id is empty)")
        notifier.check_slack_connection()
        message = self._message(data)
        actor = run_actor(context)
        try:
            response = notifier.deliver("slack", message)
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            hook.record_event(
                incident_id,
                step=FinanceReportStep.SLACK,
                outcome=_(
                    "telling on-call on Slack (%(channel)s) failed: %(error)s",
                    channel=self.slack_channel,
                    error=error,
                ),
                actor=actor,
                run_id=run_id,
                details={"status": "failed", "channel": self.slack_channel, "error": error},
            )
            raise
        hook.record_event(
            incident_id,
            step=FinanceReportStep.SLACK,
            outcome=_(
                "on-call told on Slack (%(channel)s) of report %(ticket)s",
                channel=self.slack_channel,
                ticket=data.get("finance_ticket"),
            ),
            actor=actor,
            run_id=run_id,
            details={"status": "sent", "channel": self.slack_channel, "response": dict(response)},
        )
        self.log.info("On-call told in %s about %s", self.slack_channel, incident_id)
        return {"slack": "sent", "incident_id": incident_id, "response": dict(response)}

    @staticmethod
    def _message(data: Mapping[str, Any]) -> Any:
        from airflow_recon_provider.artifacts import dashboard_base_url
        from airflow_recon_provider.reconciliation.finance_report import FinanceReport, slack_text
        from airflow_recon_provider.reconciliation.incident_messages import MessageKind, RenderedMessage
        from airflow_recon_provider.reconciliation.window import Window

        report = FinanceReport(
            psp=str(data["psp"]),
            window=Window.parse(data["window_start"], data["window_end"], max_span=None),
            finance_ticket=str(data["finance_ticket"]),
            description=str(data.get("description") or ""),
        )
        incident_id = str(data["incident_id"])
        text = slack_text(
            report,
            incident_id=incident_id,
            opened=data.get("incident_action") == "opened",
            reported_by=str(data.get("reported_by") or "?"),
            dry_run_id=str((data.get("dry_run") or {}).get("run_id") or "?"),
            incident_link=f"{dashboard_base_url()}/incidents/{incident_id}",
        )
        subject = _(
            "Finance report %(ticket)s — %(incident)s", ticket=report.finance_ticket, incident=incident_id
        )
        return RenderedMessage(
            kind=MessageKind.FINANCE_REPORT, subject=subject, text=text, html="", slack_text=text
        )


def record_findings(context: Context, *, scope_task_id: str) -> int | None:
    """In a finance report's dry run, record what the investigation (the ``snapshot`` step
    whose success calls this) found on the incident; return the event id (``None`` for any
    other run, which records nothing).

    The findings: divergence by kind and currency (each currency in its own minor units, the
    converted total with its rates), gateway vs statement per status and currency, the ledger
    per status beside the gateway's counts, the cycles of the window and the snapshot CSV.
    """
    from airflow_recon_provider.hooks.finance_report import FinanceReportHook
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.reconciliation.finance_report import REMEDIATION_DAG_ID, FinanceReportStep
    from airflow_recon_provider.reconciliation.inputs import parse_bool
    from airflow_recon_provider.reconciliation.window import Window

    ti = context["ti"]
    scope = ti.xcom_pull(task_ids=scope_task_id) or {}
    incident_id = scope.get("incident_id")
    if not incident_id or not parse_bool(scope.get("dry_run", True), name="dry_run"):
        return None
    run_id = run_id_of(context)
    conn_id = getattr(ti.task, "billing_gateway_conn_id", None) or BILLING_GATEWAY_CONN_ID
    config = ReconConfig.load()
    incidents = IncidentHook(billing_gateway_conn_id=conn_id, config=config)
    report = next(
        (
            e
            for e in reversed(incidents.timeline(incident_id))
            if e.step == FinanceReportStep.REPORTED
            and (e.details.get("dry_run") or {}).get("run_id") == run_id
        ),
        None,
    )
    if report is None:
        return None
    result = ti.xcom_pull(task_ids=ti.task_id) or {}
    summary = dict(result.get("summary") or {})
    ledger = dict(result.get("ledger") or {})
    window = Window.parse(result["window_start"], result["window_end"], max_span=None)
    sides = FinanceReportHook(billing_gateway_conn_id=conn_id, config=config).sides(
        result["psp"], window, ledger_statuses=ledger.get("statuses") or ()
    )
    ticket = report.details.get("finance_ticket")
    details = {
        "finance_ticket": ticket,
        "report_event_id": report.id,
        "dry_run": {"dag_id": REMEDIATION_DAG_ID, "run_id": run_id},
        "psp": result["psp"],
        **window.as_dict(),
        "outcome": result.get("outcome"),
        "divergence": {
            key: summary.get(key)
            for key in (
                "divergent_count",
                "divergent_amount_minor",
                "gateway_count",
                "gateway_amount_minor",
                "divergence_pct",
                "reporting_currency",
                "by_kind",
                "by_currency",
                "fx_rates",
                "unconverted_currencies",
            )
        },
        "gateway_vs_statement": sides["gateway_vs_statement"],
        "ledger": {
            "status": ledger.get("status"),
            "detail": ledger.get("detail"),
            "matches": ledger.get("matches"),
            "statuses": sides["ledger"],
        },
        "cycles": result.get("cycles"),
        "snapshot": result.get("snapshot"),
    }
    differing = sum(1 for line in sides["gateway_vs_statement"] if not line["matches"])
    with language_scope():  # the timeline keeps the text in the configured language
        ledger_word = (
            (
                _("ledger matches the gateway")
                if ledger.get("matches")
                else _("ledger differs from the gateway")
            )
            if ledger.get("status") == "ok"
            else _("ledger not read (%(status)s)", status=ledger.get("status"))
        )
        outcome = _(
            "dry-run findings for report %(ticket)s: %(keys)s; gateway vs. statement: %(lines)s; %(ledger)s",
            ticket=ticket,
            keys=ngettext(
                "%(num)s divergent key", "%(num)s divergent keys", int(summary.get("divergent_count") or 0)
            ),
            lines=ngettext(
                "%(num)s status and currency line differs",
                "%(num)s status and currency lines differ",
                differing,
            ),
            ledger=ledger_word,
        )
    return incidents.record_event(
        incident_id,
        step=FinanceReportStep.FINDINGS,
        outcome=outcome,
        actor=run_actor(context),
        run_id=run_id,
        figures=summary if "divergent_amount_minor" in summary else None,
        details=details,
    )


@dataclass(frozen=True)
class RecordFinanceFindings:
    """Success callback of the remediation's ``snapshot`` step: when the run is a finance
    report's dry run, record its findings on the incident (see
    :func:`airflow_recon_provider.operators.finance_report.record_findings`). It never changes
    the step's outcome: a problem is logged.

    :param scope_task_id: the run's scope step (its XCom holds the request and the incident).
    """

    scope_task_id: str

    def __call__(self, context: Context) -> None:
        try:
            record_findings(context, scope_task_id=self.scope_task_id)
        except Exception:
            log.exception("Could not record the finance report's findings on the incident timeline")


def finance_findings_callback(scope_task_id: str) -> RecordFinanceFindings:
    return RecordFinanceFindings(scope_task_id)


__all__ = [
    "DRY_RUN_CONF_KEY",
    "DRY_RUN_ID_KEY",
    "NotifyFinanceReportOperator",
    "RecordFinanceFindings",
    "RecordFinanceReportOperator",
    "finance_findings_callback",
    "record_findings",
]
