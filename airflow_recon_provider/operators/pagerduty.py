"""Operators of runbook *Detecção* 1 ("Alertas no PagerDuty"): the alert
``billing_gateway-reconciliation`` in PagerDuty, one alert per incident.

- :class:`PagerDutyAlertOperator` — in ``billing_gateway_divergence_watch``: *trigger* the
  alert of each PSP the watch fired for, on the PSP's open incident (dedup key
  ``billing_gateway-reconciliation:<psp>:<incident_id>``: a re-fire while the incident is
  open is the same PagerDuty incident).
- :class:`PagerDutyIncidentEventOperator` — in ``billing_gateway_remediation``:
  *acknowledge* once the incident is mitigating, *resolve* once it is recovered (or closed).
- :class:`PagerDutyFinanceReportOperator` — in ``billing_gateway_finance_report``
  (*Detecção* 2): finance's report told to on-call at low urgency (severity ``info``, the
  incident's dedup key; see :mod:`~airflow_recon_provider.reconciliation.paging`).

PagerDuty never holds the runbook up: the hook retries a bounded number of times, then the
task records the failure on the incident timeline and **ends successfully**. A failed page
is a fact about communication (the timeline and the dashboard show it; a later re-fire
triggers again with the same key), not a failure of the reconciliation: failing the task
would fail the watch's run, or mark a remediation that recovered the PSP as failed, and
retrying it would page again. Every event sent, or not delivered, is on the timeline (step
``communication.pagerduty``) with its dedup key, action, severity and outcome, never the
routing key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_recon_provider.i18n import _, language_scope
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, PAGERDUTY_CONN_ID, REMEDIATION_DAG_ID
from airflow_recon_provider.operators._context import blank
from airflow_recon_provider.operators._scoped import ScopedOperator
from airflow_recon_provider.reconciliation.detection import WATCH_ACTOR, WATCH_ALERT_STEP, WATCH_RUN_PREFIX

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.incidents import Incident
    from airflow_recon_provider.reconciliation.paging import PagingEvent


def _api_base_url() -> str:
    """Airflow's UI address (``[api] base_url``), where the run's grid is."""
    from airflow.providers.common.compat.sdk import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").strip().rstrip("/")


def _dashboard_url() -> str:
    from airflow_recon_provider.artifacts import dashboard_base_url

    return dashboard_base_url() + "/"


def remediation_run_id(incident: Incident, hook: IncidentHook) -> str | None:
    """The remediation run working on ``incident``: the watch's ``watch__<id>`` when the
    watch opened it or fired on it (a finance report's incident), else the latest remediation
    run on its timeline (its scope step)."""
    if incident.opened_by == WATCH_ACTOR:
        return f"{WATCH_RUN_PREFIX}{incident.incident_id}"
    timeline = hook.timeline(incident.incident_id)
    if any(e.step == WATCH_ALERT_STEP for e in timeline):
        return f"{WATCH_RUN_PREFIX}{incident.incident_id}"
    runs = [e.run_id for e in timeline if e.step == "investigation.scope" and e.run_id]
    return runs[-1] if runs else None


def send_and_record(
    event: PagingEvent,
    *,
    incident_hook: IncidentHook,
    pagerduty_conn_id: str,
    actor: str,
    run_id: str | None,
    log: Any,
    note: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``event`` and put the outcome on the incident's timeline; never raises for
    PagerDuty's sake (the outcome says ``sent`` or ``failed``). ``note`` ends the timeline's
    text of a delivered event, ``details`` are added to the event's details."""
    from airflow_recon_provider.hooks.pagerduty import ReconPagerDutyEventsHook
    from airflow_recon_provider.reconciliation.paging import PAGING_STEP

    hook: ReconPagerDutyEventsHook | None = None
    try:
        hook = ReconPagerDutyEventsHook(pagerduty_conn_id)
        answer = hook.send(event)
        severity = f" ({event.severity})" if event.action.value == "trigger" else ""
        status = "sent"
        outcome = _(
            "PagerDuty %(action)s sent%(severity)s: %(key)s",
            action=event.action.value,
            severity=severity,
            key=event.dedup_key,
        )
        extra: dict[str, Any] = {
            "attempts": answer.get("attempts"),
            "http_status": answer.get("http_status"),
            "pagerduty_status": answer.get("status"),
        }
    except Exception as exc:
        # the routing key never leaves the hook, not even in an unexpected error
        text = f"{type(exc).__name__}: {exc}"
        if hook is not None and hook.integration_key:
            text = text.replace(hook.integration_key, "***")
        log.warning("PagerDuty %s of %s not delivered: %s", event.action.value, event.dedup_key, text)
        status = "failed"
        outcome = _("PagerDuty %(action)s not delivered: %(error)s", action=event.action.value, error=text)
        extra = {"error": text}
    if note and status == "sent":
        outcome = f"{outcome} — {note}"
    record = {**event.record(), "status": status, "connection": pagerduty_conn_id, **extra, **(details or {})}
    try:
        event_id = incident_hook.record_event(
            event.incident_id,
            step=PAGING_STEP,
            outcome=outcome[:2000],
            actor=actor,
            run_id=run_id,
            details=record,
        )
        record["timeline_event_id"] = event_id
    except Exception:
        # the timeline is the record of paging: without it the task must say so loudly
        log.exception("Could not record the PagerDuty %s on %s", event.action.value, event.incident_id)
        raise
    log.info("%s: %s", event.incident_id, outcome)
    return record


class PagerDutyAlertOperator(BaseOperator):
    """Trigger the alert ``billing_gateway-reconciliation`` in PagerDuty for each alert of
    the divergence watch, on the PSP's open incident (just opened by ``open_incidents``, or
    already open: the same dedup key, so PagerDuty keeps one incident).

    Severity from the alert's reasons (amount: error; lag, fx_rate_missing: warning; the
    highest of several); custom details: the divergence per currency and converted to reais
    (integers with their currency, and the pt-BR text), lag and window; links: the dashboard
    and the remediation run's grid. Returns one record per alert (``status`` ``sent``,
    ``failed`` or ``no_incident``).

    :param alerts: the watch's alert payloads (templated; usually ``collect_alerts``' XCom).
    :param pagerduty_conn_id: PagerDuty connection (``pagerduty_events``); empty: no paging.
    :param billing_gateway_conn_id: gateway database (the ``recon`` schema).
    :param remediation_dag_id: the DAG whose run the alert links to.
    """

    template_fields: Sequence[str] = ("alerts", "pagerduty_conn_id")
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        alerts: Any,
        pagerduty_conn_id: str | None = PAGERDUTY_CONN_ID,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        remediation_dag_id: str = REMEDIATION_DAG_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alerts = alerts
        self.pagerduty_conn_id = pagerduty_conn_id
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.remediation_dag_id = remediation_dag_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        with language_scope():  # the alert's summary and the timeline's text, in [recon] language
            return self._execute(context)

    def _execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_id_of
        from airflow_recon_provider.reconciliation.paging import (
            PagingAction,
            follow_up_event,
            paging_state,
            run_grid_url,
            trigger_event,
        )

        if blank(self.pagerduty_conn_id):
            self.log.info("No PagerDuty connection configured: nobody is paged")
            return []
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        results = []
        for alert in self.alerts or []:
            psp = str(alert.get("psp") or "")
            incident = hook.open_incident_for(psp)
            if incident is None:
                self.log.warning("PSP %s fired but has no open incident: nothing to page about", psp)
                results.append({"psp": psp, "status": "no_incident"})
                continue
            run = remediation_run_id(incident, hook)
            event = trigger_event(
                alert,
                incident_id=incident.incident_id,
                source=WATCH_ACTOR,
                dashboard_url=_dashboard_url(),
                run_url=run_grid_url(_api_base_url(), self.remediation_dag_id, run) if run else None,
            )
            state = paging_state(hook.timeline(incident.incident_id))
            if state.superseded_by(event.severity):
                # the open alert is a lower-severity one (a finance report's, low urgency):
                # PagerDuty would add this trigger to it and keep its urgency
                send_and_record(
                    follow_up_event(
                        PagingAction.RESOLVE,
                        psp=psp,
                        incident_id=incident.incident_id,
                        source=WATCH_ACTOR,
                        note=_("superseded by a %(severity)s alert", severity=event.severity),
                    ),
                    incident_hook=hook,
                    pagerduty_conn_id=str(self.pagerduty_conn_id).strip(),
                    actor=WATCH_ACTOR,
                    run_id=run_id_of(context),
                    log=self.log,
                    note=_(
                        "%(before)s alert superseded by a %(after)s one",
                        before=state.severity,
                        after=event.severity,
                    ),
                    details={"superseded_severity": state.severity},
                )
            results.append(
                send_and_record(
                    event,
                    incident_hook=hook,
                    pagerduty_conn_id=str(self.pagerduty_conn_id).strip(),
                    actor=WATCH_ACTOR,
                    run_id=run_id_of(context),
                    log=self.log,
                )
            )
        return results


class PagerDutyIncidentEventOperator(ScopedOperator):
    """Acknowledge or resolve the incident's PagerDuty alert (the dedup key of its trigger).

    Sent only when the timeline says the alert was triggered and is not already in that
    state (a re-run, or an incident nobody was paged for, sends nothing and says why).
    Returns the record (``status`` ``sent``, ``failed`` or ``not_needed`` with the reason).

    :param incident_id: ``INCIDENT-<n>``; templated (empty: nothing to do).
    :param action: ``acknowledge`` or ``resolve``; templated.
    :param note: why, on the timeline; templated.
    :param pagerduty_conn_id: PagerDuty connection (``pagerduty_events``); empty: no paging.
    :param billing_gateway_conn_id: gateway database (the ``recon`` schema).
    """

    template_fields: Sequence[str] = ("incident_id", "action", "note", "pagerduty_conn_id")
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        incident_id: str,
        action: str,
        note: str = "",
        pagerduty_conn_id: str | None = PAGERDUTY_CONN_ID,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_recon_provider.reconciliation.paging import PagingAction, parse_action

        if "{{" not in str(action) and parse_action(action) is PagingAction.TRIGGER:
            raise ValueError("a trigger comes from the divergence watch (PagerDutyAlertOperator)")
        self.incident_id = incident_id
        self.action = action
        self.note = note
        self.pagerduty_conn_id = pagerduty_conn_id
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        with language_scope():  # the alert's summary and the timeline's text, in [recon] language
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_actor, run_id_of
        from airflow_recon_provider.reconciliation.paging import follow_up_event, paging_state, parse_action

        action = parse_action(self.action)
        incident_id = self.scope_incident_id()
        if incident_id is None:
            self.log.info("No incident: no PagerDuty %s", action.value)
            return {"status": "not_needed", "reason": "no incident"}
        if blank(self.pagerduty_conn_id):
            self.log.info("No PagerDuty connection configured: no %s", action.value)
            return {"incident_id": incident_id, "status": "not_needed", "reason": "no PagerDuty connection"}
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        incident = hook.get(incident_id)
        why_not = paging_state(hook.timeline(incident_id)).needs(action)
        if why_not:
            self.log.info("%s: no PagerDuty %s: %s", incident_id, action.value, why_not)
            return {"incident_id": incident_id, "status": "not_needed", "reason": why_not}
        event = follow_up_event(
            action,
            psp=incident.psp,
            incident_id=incident_id,
            source=f"{context['dag'].dag_id}.{self.task_id}" if context.get("dag") else self.task_id,
            # a note marked with N_ in the DAG ("Mitigation started (runbook)") in [recon] language
            note="" if blank(self.note) else _(str(self.note)),
        )
        return send_and_record(
            event,
            incident_hook=hook,
            pagerduty_conn_id=str(self.pagerduty_conn_id).strip(),
            actor=run_actor(context),
            run_id=run_id_of(context),
            log=self.log,
        )


class PagerDutyFinanceReportOperator(BaseOperator):
    """Tell on-call in PagerDuty, at low urgency, about finance's report (runbook *Detecção*
    2): a *trigger* with severity ``info`` and the incident's dedup key
    ``billing_gateway-reconciliation:<psp>:<incident_id>`` (custom details: the ticket, the
    window, the description, who reported, the dry run; links: the incident's page on the
    dashboard and the dry run's grid).

    With no open alert for the incident it opens the incident's PagerDuty incident, low
    urgency on a service whose urgency follows severity; the remediation's acknowledge and
    resolve close it as usual. With an open alert, PagerDuty adds it to that alert (nobody is
    paged twice, the alert keeps its urgency). The outcome is on the incident timeline
    (``communication.pagerduty``, with ``finance_ticket`` and ``urgency``). PagerDuty down or
    the connection missing: recorded, and the task still succeeds (the report, its dry run and
    the Slack message never wait for PagerDuty). A retried run that delivered it already
    sends nothing.

    :param report: the finance report's record step result (templated; its XCom).
    :param pagerduty_conn_id: PagerDuty connection (``pagerduty_events``); empty: no paging.
    :param billing_gateway_conn_id: gateway database (the ``recon`` schema).
    :param remediation_dag_id: the DAG of the dry run the alert links to.
    """

    template_fields: Sequence[str] = ("report", "pagerduty_conn_id")
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        report: Any,
        pagerduty_conn_id: str | None = PAGERDUTY_CONN_ID,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        remediation_dag_id: str = REMEDIATION_DAG_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.pagerduty_conn_id = pagerduty_conn_id
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.remediation_dag_id = remediation_dag_id

    def execute(self, context: Context) -> dict[str, Any]:
        with language_scope():  # the alert's summary and the timeline's text, in [recon] language
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        from collections.abc import Mapping

        from airflow_recon_provider.artifacts import dashboard_base_url
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_actor, run_id_of
        from airflow_recon_provider.reconciliation.incidents import check_incident_id
        from airflow_recon_provider.reconciliation.paging import (
            PAGING_STEP,
            finance_report_event,
            paging_state,
            run_grid_url,
        )

        data = self.report if isinstance(self.report, Mapping) else {}
        if not data.get("incident_id"):
            raise ValueError(f"the finance report's record step returned no incident: {self.report!r}")
        incident_id = check_incident_id(str(data["incident_id"]))
        ticket = str(data.get("finance_ticket") or "")
        if blank(self.pagerduty_conn_id):
            self.log.info("No PagerDuty connection configured: on-call is told in Slack only")
            return {"incident_id": incident_id, "status": "not_needed", "reason": "no PagerDuty connection"}
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        run_id = run_id_of(context)
        timeline = hook.timeline(incident_id)
        delivered = [
            e
            for e in timeline
            if e.step == PAGING_STEP
            and e.run_id == run_id
            and e.details.get("finance_ticket") == ticket
            and e.details.get("status") == "sent"
        ]
        if delivered:
            self.log.info("This run told PagerDuty already (event %s): not again", delivered[0].id)
            return {
                "incident_id": incident_id,
                "status": "already sent",
                "timeline_event_id": delivered[0].id,
            }
        state = paging_state(timeline)
        dry_run = data.get("dry_run") if isinstance(data.get("dry_run"), Mapping) else {}
        event = finance_report_event(
            data,
            source=f"{context['dag'].dag_id}.{self.task_id}" if context.get("dag") else self.task_id,
            dashboard_url=f"{dashboard_base_url()}/incidents/{incident_id}",
            run_url=run_grid_url(_api_base_url(), self.remediation_dag_id, str(dry_run["run_id"]))
            if dry_run.get("run_id")
            else None,
        )
        if state.open:
            urgency = f"added to the open alert ({state.severity or 'unknown'} severity, its urgency)"
            note = _(
                "report %(ticket)s: attached to the alert already open in PagerDuty (%(severity)s)",
                ticket=ticket,
                severity=state.severity,
            )
        else:
            urgency = "low (severity info)"
            note = _("report %(ticket)s: on-call told in PagerDuty with low urgency", ticket=ticket)
        return send_and_record(
            event,
            incident_hook=hook,
            pagerduty_conn_id=str(self.pagerduty_conn_id).strip(),
            actor=run_actor(context),
            run_id=run_id,
            log=self.log,
            note=note,
            details={"urgency": urgency},
        )


__all__ = [
    "PAGERDUTY_CONN_ID",
    "PagerDutyAlertOperator",
    "PagerDutyFinanceReportOperator",
    "PagerDutyIncidentEventOperator",
    "remediation_run_id",
    "send_and_record",
]
