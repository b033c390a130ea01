"""PauseReconciliationOperator and ResumeReconciliationOperator — runbook, Ações de Contenção
and Encerramento.

- "Pausar reconciliação automática para PSP afetado: ``/billing-gateway reconciliation pause
  <psp>`` (Slack-bot)." and "Informar time financeiro sobre congelamento temporário e
  estimativa de retomada."
- "Retomar reconciliação automática (``/billing-gateway reconciliation resume <psp>``)."

Each writes the PSP's control in ``recon.controls`` (who: the user who triggered the run;
why; incident; when) and one ``recon.control_events`` row, tells the incidents channel
(Slack, through :class:`FinanceNotifier`), and, on pause, sends finance the containment
notice with the moment of the pause. Both are idempotent: pausing a paused PSP (or resuming
an active one) records nothing new, notifies nobody and says so; a retry of the same run
completes the notifications it may have missed, never duplicating one (each message is
logged in ``recon.notifications`` under a key of the change).

What "paused" means: the scheduled runs of ``billing_gateway_reconciliation`` skip the PSP;
runs started by :class:`ReprocessReconciliationOperator` (conf ``reprocess: true``) still
reconcile it — reprocessing is the runbook's next step after containment.

Hooks are imported inside ``execute`` so DAG files parse fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_recon_provider.names import (
    BILLING_GATEWAY_CONN_ID,
    FINANCE_EMAIL,
    INCIDENTS_CHANNEL,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
)
from airflow_recon_provider.operators._context import blank, run_actor, run_id_of
from airflow_recon_provider.operators._scoped import ScopedOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.notifications.finance import FinanceNotifier
    from airflow_recon_provider.reconciliation.controls import ControlChange
    from airflow_recon_provider.reconciliation.incidents import Incident


def _timeline_text(change: ControlChange) -> str:
    """The change as the timeline keeps it, in ``[recon] language``."""
    from airflow_recon_provider.i18n import language_scope

    with language_scope():
        return change.describe()


class _ControlOperator(ScopedOperator):
    """Put a PSP's automatic reconciliation in one state (see the module docstring).

    :param psp: the PSP (templated).
    :param reason: why (templated); default: says which run asked.
    :param incident_id: the incident of the change (templated); default: the PSP's open
        incident, if any. It must be an incident of this PSP that is not closed.
    :param actor: who asks (templated); default: the user who triggered the run, else
        ``airflow:<dag_id>``.
    :param slack_conn_id: Slack connection of the incidents channel; empty: no Slack message.
    :param slack_channel: the incidents channel (templated).
    :param smtp_conn_id: SMTP connection of the finance e-mail (pause only).
    :param recipients: finance's addresses (templated; pause only).
    :param billing_gateway_conn_id: the gateway database (``recon`` schema; the primary).
    """

    target: ClassVar[str] = ""
    step: ClassVar[str] = ""
    template_fields: Sequence[str] = (
        "psp",
        "reason",
        "incident_id",
        "actor",
        "slack_channel",
        "recipients",
    )
    ui_color = "#fff4ce"

    def __init__(
        self,
        *,
        psp: str,
        reason: str | None = None,
        incident_id: str | None = None,
        actor: str | None = None,
        slack_conn_id: str | None = SLACK_CONN_ID,
        slack_channel: str = INCIDENTS_CHANNEL,
        smtp_conn_id: str = SMTP_CONN_ID,
        recipients: str | Sequence[str] = FINANCE_EMAIL,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.reason = reason
        self.incident_id = incident_id
        self.actor = actor
        self.slack_conn_id = slack_conn_id
        self.slack_channel = slack_channel
        self.smtp_conn_id = smtp_conn_id
        self.recipients = recipients
        self.billing_gateway_conn_id = billing_gateway_conn_id

    # -- helpers ---------------------------------------------------------------------------
    def _notifier(self, actor: str) -> FinanceNotifier:
        from airflow_recon_provider.notifications.finance import FinanceNotifier

        return FinanceNotifier(
            recipients=self.recipients,
            smtp_conn_id=self.smtp_conn_id,
            slack_conn_id=None if blank(self.slack_conn_id) else self.slack_conn_id,
            slack_channel=self.slack_channel,
            billing_gateway_conn_id=self.billing_gateway_conn_id,
            actor=actor,
        )

    def _incident(self, incidents: IncidentHook, psp: str) -> Incident | None:
        from airflow_recon_provider.reconciliation.incidents import (
            IncidentInputError,
            IncidentState,
        )

        incident_id = self.scope_incident_id()
        if incident_id is None:
            return incidents.open_incident_for(psp)
        incident = incidents.get(incident_id)
        if incident.psp != psp:
            raise IncidentInputError(
                f"incident {incident.incident_id} is about PSP {incident.psp}, not {psp}"
            )
        if incident.state is IncidentState.CLOSED:
            raise IncidentInputError(
                f"incident {incident.incident_id} is closed; a change belongs to an open one"
            )
        return incident

    def _default_reason(self, context: Context) -> str:
        ti = context["ti"]
        return f"{self.target_state_verb()} by {ti.dag_id} run {ti.run_id}"

    @classmethod
    def target_state_verb(cls) -> str:
        return "paused" if cls.target == "paused" else "resumed"

    def _check_connections(self, notifier: FinanceNotifier) -> None:
        notifier.check_slack_connection()

    def _after_change(
        self, context: Context, change: ControlChange, notifier: FinanceNotifier, incident: Incident | None
    ) -> dict[str, Any]:
        return {}

    # -- execute ---------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.controls import ReconciliationControlHook
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.notifications.finance import DeliveryOutcome

        psp = self.scope_psp()
        actor = self.optional_text("actor") or run_actor(context)
        reason = self.optional_text("reason") or self._default_reason(context)
        run_id = run_id_of(context)
        controls = ReconciliationControlHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        incidents = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=controls.config)
        incidents.gateway.resolve_psp(psp)  # UnknownPspError before anything is written
        incident = self._incident(incidents, psp)
        notifier = self._notifier(actor)
        self._check_connections(notifier)  # a missing connection fails here, before any write

        change = controls.set_state(
            psp,
            self.target,
            actor=actor,
            reason=reason,
            incident_id=incident.incident_id if incident else None,
            run_id=run_id,
        )
        result: dict[str, Any] = {
            "psp": psp,
            "state": change.control.state.value,
            "incident_id": incident.incident_id if incident else None,
            **change.as_dict(),
        }
        if not (change.changed or change.retry):
            self.log.info("%s", change.describe())
            return {**result, "notifications": {}}

        if change.retry:
            self.log.info(
                "PSP %s was %s by this run already (a retry): completing the notifications", psp, self.target
            )
        notifications = {"slack_control": notifier.send_control_message(change, run_id=run_id)}
        notifications.update(self._after_change(context, change, notifier, incident))
        failed = {
            name: outcome
            for name, outcomes in notifications.items()
            for outcome in outcomes.values()
            if DeliveryOutcome.parse(outcome).failed
        }
        if failed:
            # the control is in place; the message is logged in recon.notifications as failed
            self.log.warning("PSP %s %s, but not every message was delivered: %s", psp, self.target, failed)
        if incident is not None:
            figures, note = incidents.current_figures(incident)
            incidents.record_event(
                incident.incident_id,
                step=self.step,
                outcome=_timeline_text(change),
                actor=actor,
                run_id=run_id,
                figures=None if note else figures,
                details={
                    "state": change.control.state.value,
                    "reason": reason,
                    "changed_at": change.control.changed_at,
                    "retry": change.retry,
                    "notifications": notifications,
                },
            )
        self.log.info("%s", change.describe())
        return {**result, "notifications": notifications}


class PauseReconciliationOperator(_ControlOperator):
    """Pause the automatic reconciliation of a PSP, tell the incidents channel, and send
    finance the containment notice (runbook, Ações de Contenção). See the module docstring.

    Returns ``{"psp", "state", "incident_id", "outcome" (paused | already_paused), "changed",
    "retry", "control", "previous", "event_id", "notifications"}``.

    :param eta_resumption: estimated resumption, ISO 8601 with offset (templated); recorded on
        the incident and in the notice; empty: not yet estimated.
    :param notify_finance: send the containment notice by e-mail (and Slack).
    """

    target = "paused"
    step = "containment.pause"
    template_fields: Sequence[str] = (*_ControlOperator.template_fields, "eta_resumption")

    def __init__(
        self, *, eta_resumption: str | datetime | None = None, notify_finance: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.eta_resumption = eta_resumption
        self.notify_finance = notify_finance

    def _check_connections(self, notifier: FinanceNotifier) -> None:
        if self.notify_finance:
            notifier.check_connections()  # SMTP and Slack
        else:
            notifier.check_slack_connection()

    def _after_change(
        self, context: Context, change: ControlChange, notifier: FinanceNotifier, incident: Incident | None
    ) -> dict[str, Any]:
        from airflow_recon_provider.notifications.finance import send_containment_notice
        from airflow_recon_provider.reconciliation.window import parse_timestamp

        if not self.notify_finance:
            return {}
        eta = (
            None
            if blank(self.eta_resumption)
            else parse_timestamp(self.eta_resumption, name="eta_resumption")
        )
        outcomes = send_containment_notice(
            change.control.psp,
            paused_by=change.control.actor,
            reason=change.control.reason,
            eta_resumption=eta,
            incident_id=incident.incident_id if incident else None,
            # one notice per pause: a retry of this run finds it already sent
            paused_at=change.control.changed_at,
            run_id=run_id_of(context),
            notifier=notifier,
        )
        return {"containment_notice": outcomes}


class ResumeReconciliationOperator(_ControlOperator):
    """Resume the automatic reconciliation of a PSP and tell the incidents channel (runbook,
    Encerramento). See the module docstring.

    Returns ``{"psp", "state", "incident_id", "outcome" (resumed | already_active), "changed",
    "retry", "control", "previous", "event_id", "notifications"}``.
    """

    target = "active"
    step = "closure.resume"


__all__ = ["PauseReconciliationOperator", "ResumeReconciliationOperator"]
