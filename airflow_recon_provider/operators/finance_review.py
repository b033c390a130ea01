"""Encerramento 4 — "Agendar revisão com financeiro para confirmar correções definitivas".

:class:`ScheduleFinanceReviewOperator` runs once the incident is closed and its closing
report attached: it chooses the review's slot (the next business-day slot after the closing
moment, ``RECON_CONFIG`` ``finance_review``), invites finance and on-call, links the closing
report, and records "revisão agendada para …" on the incident's timeline. The closing e-mail
(the final update, :class:`~airflow_recon_provider.notifications.finance.FinanceNotifier`)
then carries the invitation. The slot and the invitation are domain code
(:mod:`airflow_recon_provider.reconciliation.finance_review`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, FINANCE_EMAIL, SMTP_CONN_ID
from airflow_recon_provider.operators._context import blank
from airflow_recon_provider.operators._scoped import ScopedOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.reconciliation.incidents import IncidentEvent

#: the closing report's artifacts on its timeline event, the one people read first
_REPORT_KINDS = ("closing_report_html", "closing_report")


def closing_report_link(incident_id: str, events: Sequence[IncidentEvent]) -> str:
    """The dashboard link of the closing report attached to the incident (the latest)."""
    from airflow_recon_provider.reconciliation.incidents import IncidentInputError, Step

    for event in reversed(events):
        if event.step != Step.CLOSING_REPORT:
            continue
        artifacts = [a for a in event.details.get("artifacts") or [] if isinstance(a, dict)]
        for kind in _REPORT_KINDS:
            for artifact in artifacts:
                if artifact.get("kind") == kind and artifact.get("link"):
                    return str(artifact["link"])
    raise IncidentInputError(
        f"{incident_id} has no closing report in the artifact store yet: the review links it, so "
        "run the closing report step first"
    )


class ScheduleFinanceReviewOperator(ScopedOperator):
    """Schedule the review with finance of a closed incident (runbook, Encerramento 4).

    The slot is the first business-day slot after the incident's closing moment (default
    10:00 America/Sao_Paulo, 60 minutes; ``RECON_CONFIG`` ``finance_review``: ``time``,
    ``timezone``, ``duration_minutes``, ``holidays``). Finance and on-call are invited by the
    sender of finance's e-mails; the closing report is linked. Recorded once per incident
    (``closure.finance_review``): a retry, or another closing run, finds it and keeps it.

    Returns ``{"incident_id", "scheduled", "review"}`` (``scheduled``: recorded by this try).

    :param incident_id: ``INCIDENT-<n>``; templated.
    :param finance_recipients: finance's addresses, comma separated; templated.
    :param oncall_recipients: on-call's addresses, comma separated; empty: finance only;
        templated.
    :param smtp_conn_id: the SMTP connection whose sender organizes the review; templated.
    :param billing_gateway_conn_id: gateway database (``recon`` schema).
    """

    template_fields: Sequence[str] = (
        "incident_id",
        "finance_recipients",
        "oncall_recipients",
        "smtp_conn_id",
    )
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        incident_id: str,
        finance_recipients: str | Sequence[str] = FINANCE_EMAIL,
        oncall_recipients: str | Sequence[str] = "",
        smtp_conn_id: str = SMTP_CONN_ID,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.finance_recipients = finance_recipients
        self.oncall_recipients = oncall_recipients
        self.smtp_conn_id = smtp_conn_id
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.notifications.finance import FinanceNotifier, parse_recipients
        from airflow_recon_provider.operators._context import run_actor, run_id_of
        from airflow_recon_provider.reconciliation.finance_review import (
            REVIEW_STEP,
            schedule_review,
            scheduled_review,
        )
        from airflow_recon_provider.reconciliation.incidents import (
            IncidentInputError,
            IncidentState,
        )

        incident_id = self.scope_incident_id(required=True)
        config = self.scope_config()
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config)
        incident = hook.get(incident_id)
        if incident.state is not IncidentState.CLOSED or incident.closed_at is None:
            raise IncidentInputError(
                f"{incident_id} is {incident.state.value}: the review with finance is scheduled when the "
                "incident is closed"
            )
        events = hook.timeline(incident_id)
        existing = scheduled_review(incident_id, events)
        if existing is not None:
            self.log.info("%s: %s (already recorded; kept)", incident_id, existing.outcome())
            return {"incident_id": incident_id, "scheduled": False, "review": existing.as_details()}

        notifier = FinanceNotifier(recipients=self.finance_recipients, smtp_conn_id=self.smtp_conn_id)
        attendees = parse_recipients(self.finance_recipients)
        oncall = "" if blank(self.oncall_recipients) else self.oncall_recipients
        if oncall:
            attendees += parse_recipients(oncall)
        else:
            self.log.warning(
                "No on-call address configured (Airflow Variable recon_oncall_recipients): "
                "only finance is invited to the review of %s",
                incident_id,
            )
        review = schedule_review(
            incident_id=incident_id,
            psp=incident.psp,
            closed_at=incident.closed_at,
            organizer=notifier.sender(),
            attendees=attendees,
            scheduled_at=datetime.now(UTC),
            report_link=closing_report_link(incident_id, events),
            policy=config.finance_review,
        )
        from airflow_recon_provider.i18n import _, language_scope

        with language_scope():  # the timeline keeps the words in [recon] language
            outcome = review.outcome() + ("" if oncall else " " + _("(no on-call e-mail configured)"))
        hook.record_event(
            incident_id,
            step=REVIEW_STEP,
            outcome=outcome,
            actor=run_actor(context),
            run_id=run_id_of(context),
            details=review.as_details(),
        )
        self.log.info("%s: %s", incident_id, review.outcome())
        return {"incident_id": incident_id, "scheduled": True, "review": review.as_details()}


__all__ = ["ScheduleFinanceReviewOperator", "closing_report_link"]
